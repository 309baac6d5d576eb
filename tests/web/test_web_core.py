"""The box's core over HTTP: search, book pages, downloads, covers and the JSON API."""
from __future__ import annotations

import urllib.parse

import pytest

from appliance.web.context import services
from tests.conftest import import_files


@pytest.fixture
def vi_library(settings, make_epub):
    files = [
        make_epub(title="Đường về bản", authors=["Hà Thị Mai"], subjects=["Tiểu thuyết"],
                  chapters=[("Phần một", ["Tiếng khèn vọng lại từ phía đồi."]),
                            ("Phần hai", ["Mẹ đứng chờ ở đầu ngõ, mái tóc đã bạc trắng như mây núi."])]),
        make_epub(title="Thư viện trên núi", authors=["Lò Văn Sáng"],
                  chapters=[("Chương một", ["Con đường lên bản quanh co giữa những nương ngô xanh."])]),
        make_epub(title="Growing Rice", authors=["Extension Team"], language="en",
                  chapters=[("Terraces", ["Repair the earth walls before the rains."])]),
    ]
    import_files(settings, files)
    return settings


def test_unaccented_query_finds_vietnamese_title(client, vi_library):
    page = client.get("/search?q=duong ve ban")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Đường về bản" in html


def test_unaccented_author_and_phrase_inside_text(client, vi_library):
    data = client.get("/api/search?q=lo van sang").get_json()
    assert [b["title"] for b in data["books"]] == ["Thư viện trên núi"]
    data = client.get("/api/search?q=" + urllib.parse.quote('"toc da bac trang"')).get_json()
    assert data["total"] == 1
    hit = data["books"][0]
    assert hit["title"] == "Đường về bản"
    assert hit["chapter_title"] == "Phần hai"
    assert "<mark>" in hit["snippet"]


def test_book_page_and_api(client, vi_library):
    first = client.get("/api/books").get_json()
    assert first["total"] == 3
    book_id = next(b["id"] for b in first["books"] if b["title"] == "Đường về bản")
    page = client.get(f"/books/{book_id}").get_data(as_text=True)
    assert "Hà Thị Mai" in page and "Phần hai" in page
    detail = client.get(f"/api/books/{book_id}").get_json()
    assert detail["subjects"] == ["Tiểu thuyết"]
    assert [c["title"] for c in detail["chapters"]] == ["Phần một", "Phần hai"]


def test_download_names_and_ranges(client, vi_library):
    book_id = next(b["id"] for b in client.get("/api/books").get_json()["books"] if b["title"] == "Đường về bản")
    full = client.get(f"/books/{book_id}/download")
    assert full.status_code == 200
    assert full.mimetype == "application/epub+zip"
    disposition = full.headers["Content-Disposition"]
    assert 'filename="duong-ve-ban.epub"' in disposition
    assert "filename*=UTF-8''" + urllib.parse.quote("Đường về bản.epub") in disposition
    assert disposition.encode("latin-1")  # header is ASCII-safe
    body = full.data
    assert body[:2] == b"PK"
    part = client.get(f"/books/{book_id}/download", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.data == body[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
    beyond = client.get(f"/books/{book_id}/download", headers={"Range": f"bytes={len(body) + 10}-"})
    assert beyond.status_code == 416
    etag = full.headers["ETag"]
    assert client.get(f"/books/{book_id}/download", headers={"If-None-Match": etag}).status_code == 304


def test_cover_and_thumbnail(client, vi_library):
    book = client.get("/api/books").get_json()["books"][0]
    cover = client.get(book["cover"])
    assert cover.status_code == 200 and cover.mimetype.startswith("image/")
    thumb = client.get(book["thumbnail"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert len(thumb.data) < len(cover.data)


@pytest.mark.parametrize("url", [
    "/books/999999",
    "/books/999999/download",
    "/books/999999/cover",
    "/api/books/424242",
    "/authors/77777",
    "/subjects/77777",
    "/books/abc",
    # Larger than SQLite's integers: once an OverflowError and a 500.
    "/books/99999999999999999999/download",
    "/authors/99999999999999999999",
    "/api/books/99999999999999999999",
    "/books/9223372036854775808",
])
def test_unknown_things_are_404(client, vi_library, url):
    assert client.get(url).status_code == 404


def test_error_pages_speak_the_readers_language(client, vi_library):
    english = client.get("/books/999999").get_data(as_text=True)
    assert "This page is not in the library." in english and "Error 404" in english
    assert "requested URL" not in english  # werkzeug's words for programmers
    page = client.get("/books/999999", headers={"Accept-Language": "vi"})
    text = page.get_data(as_text=True)
    assert page.status_code == 404 and "Thư viện không có trang này." in text and "Lỗi 404" in text
    assert "Not Found" not in text
    bad = client.get("/search?q=x&page=abc", headers={"Accept-Language": "ar"})
    assert bad.status_code == 400 and "في هذا الطلب شيء غير صحيح." in bad.get_data(as_text=True)


@pytest.mark.parametrize("query", [
    "q=" + "a" * 5000,
    "q=x&page=abc",
    "q=x&page=-1",
    "q=x&page=0",
    "q=x&page=99999999999999999999",
    "q=%00%01",
    "q=x&lang=" + "z" * 50,
    "q=x&lang=%3Cscript%3E",
    "page=1.5",
])
def test_malformed_queries_are_400(client, vi_library, query):
    assert client.get("/search?" + query).status_code == 400
    assert client.get("/api/search?" + query).status_code == 400


@pytest.mark.parametrize("q", ['"', "(", "AND OR NOT", "*", "title:", "a:b:c", "[x TO", "ư̛̛̛̛", "\u202e", "%%%", "OR"])
def test_odd_queries_never_500(client, vi_library, q):
    assert client.get("/search", query_string={"q": q}).status_code == 200
    assert client.get("/api/search", query_string={"q": q}).status_code == 200


def test_bad_range_header_is_not_500(client, vi_library):
    book_id = client.get("/api/books").get_json()["books"][0]["id"]
    for header in ("bytes=abc", "bytes=5-1", "lines=1-2", "bytes=-0", "bytes=" + "1-2," * 500):
        assert client.get(f"/books/{book_id}/download", headers={"Range": header}).status_code in (200, 206, 416)


def test_search_falls_back_to_titles_when_index_is_gone(app, client, vi_library):
    import shutil

    state = services(app).library
    state.index.close()
    shutil.rmtree(vi_library.index_dir)
    data = client.get("/api/search?q=thu vien").get_json()
    assert data["degraded"] is True
    assert [b["title"] for b in data["books"]] == ["Thư viện trên núi"]


def test_home_lists_new_books_and_languages(client, vi_library):
    html = client.get("/").get_data(as_text=True)
    assert "Thư viện trên núi" in html and "Growing Rice" in html
    assert "/browse?lang=vi" in html


def test_counts_are_written_the_way_the_readers_language_writes_them(settings, client):
    """1,205 books: 1.205 in Vietnamese, 1 205 in French (a narrow no-break space), 1,205 in English."""
    from appliance.search import upkeep as indexing
    from appliance.search.index import SearchIndex
    from appliance.storage import catalog
    from appliance.storage import db as dbmod

    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        for n in range(1205):
            catalog.add_book(db, catalog.NewBook(
                sha256=f"{n:064x}", size=1, title=f"Mùa lúa {n}", authors=["Lò Văn Sáng"], language="vi",
                subjects=["Nông nghiệp"],
                chapters=[("c.xhtml", "Một", 40, "Lúa nương chín vàng trên đồi.")]))
        indexing.catch_up(db, index)
    finally:
        index.close()
        db.close()
    for lang, n, books, found in [("vi", "1.205", "1.205 cuốn sách", "Tìm thấy 1.205 cuốn sách"),
                                  ("fr", "1\u202f205", "1\u202f205 livres", "1\u202f205 livres trouvés"),
                                  ("en", "1,205", "1,205 books", "1,205 books found")]:
        client.set_cookie("lang", lang)
        home = client.get("/").get_data(as_text=True)
        assert books in home and f"Nông nghiệp ({n})" in home
        assert books in client.get("/browse").get_data(as_text=True)
        assert f"Lò Văn Sáng</a> ({n})" in client.get("/authors").get_data(as_text=True)
        page = client.get("/search?q=lua+nuong").get_data(as_text=True)
        assert found in page and f"Nông nghiệp ({n})" in page

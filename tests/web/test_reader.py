"""Reading on a phone: chapter pages, sanitized book HTML, preferences in cookies, offline file, poster."""
from __future__ import annotations

import re

import pytest

from appliance.books.chapterhtml import clean_chapter, split_pages
from appliance.books.demo import make_cover_png
from appliance.web.context import services
from tests.conftest import import_files

HOSTILE = """
<h2 onclick="alert(1)">Chương lạ</h2>
<script>document.title='pwned'</script>
<p style="color:red;position:fixed;top:0;background:url(http://evil.example/x.png);text-align:center">Giữa trang</p>
<img src="http://evil.example/track.gif" alt="remote">
<img src="../images/pic.png" alt="local picture" onerror="alert(2)">
<a href="javascript:alert(3)">js link</a>
<a href="chapter001.xhtml#top">back to one</a>
<a href="https://example.org/">outside</a>
<iframe src="http://evil.example/"></iframe>
<form action="http://evil.example/"><input name="x"></form>
<link rel="stylesheet" href="http://evil.example/a.css">
<style>body{display:none}</style>
<svg><script>alert(4)</script></svg>
<p id="top">Đoạn cuối <ruby>漢<rt>kan</rt></ruby></p>
"""


@pytest.fixture
def book(settings, make_epub):
    picture = make_cover_png("x", (200, 30, 30))
    long_text = [f"Đoạn số {n}: " + "lời kể dài về bản làng và con suối " * 20 for n in range(300)]
    files = [make_epub(title="Truyện thử", authors=["Người Viết"],
                       chapters=[("Chương một", ["Mở đầu câu chuyện."]), ("Chương dài", long_text)],
                       extra_chapter_html=HOSTILE, images={"pic.png": picture}),
             make_epub(title="حكايات", authors=["سلمى"], language="ar", chapters=[("الفصل", ["نص عربي قصير."])])]
    import_files(settings, files)
    return settings


def test_sanitizer_keeps_text_and_drops_everything_active():
    cleaned = clean_chapter(HOSTILE, base_href="OEBPS/text/chapter003.xhtml",
                            picture_url=lambda p: f"/books/1/file/{p}",
                            chapter_url=lambda p: "/books/1/read/0" if p.endswith("chapter001.xhtml") else None)
    lowered = cleaned.lower()
    for bad in ("<script", "onclick", "onerror", "javascript:", "evil.example", "<iframe", "<form", "<link",
                "<style", "position", "url(", "<svg", "<input"):
        assert bad not in lowered, bad
    assert "text-align:center" in cleaned.replace(" ", "")
    assert 'src="/books/1/file/OEBPS/images/pic.png"' in cleaned
    assert 'href="/books/1/read/0#b-top"' in cleaned and 'id="b-top"' in cleaned
    assert 'href="https://example.org/"' in cleaned and "noopener" in cleaned
    assert "Đoạn cuối" in cleaned and "<ruby>" in cleaned and "<rt>kan</rt>" in cleaned
    assert "Chương lạ" in cleaned


def test_long_chapters_are_split_between_blocks():
    html = "".join(f"<p>đoạn {n} " + "x" * 900 + "</p>" for n in range(100))
    pages = split_pages(f"<div><section>{html}</section></div>", 20_000)
    assert len(pages) >= 5
    assert all(len(p.encode()) <= 21_000 for p in pages)
    joined = "".join(pages)
    assert all(f"đoạn {n} " in joined for n in range(100))
    assert all(p.startswith("<p>") and p.endswith("</p>") for p in pages)


def test_reading_a_book_chapter_by_chapter(client, book):
    page = client.get("/books/1/read/0")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Mở đầu câu chuyện." in html and 'rel="next"' in html and "/books/1/read/1" in html
    hostile = client.get("/books/1/read/2").get_data(as_text=True)
    assert "<script>document.title" not in hostile and "evil.example" not in hostile
    picture = client.get("/books/1/file/OEBPS/images/pic.png")
    assert picture.status_code == 200 and picture.mimetype == "image/png"
    for bad in ("/books/1/file/OEBPS/text/chapter001.xhtml", "/books/1/file/../../etc/passwd",
                "/books/1/file/OEBPS/style.css", "/books/1/read/99", "/books/999/read/0", "/books/1/read/1?page=999"):
        assert client.get(bad).status_code == 404, bad


def test_long_chapter_has_pages(client, book):
    first = client.get("/books/1/read/1").get_data(as_text=True)
    assert re.search(r"<span>1 / (\d+)</span>", first)
    pages = int(re.search(r"<span>1 / (\d+)</span>", first).group(1))
    assert pages >= 2
    last = client.get(f"/books/1/read/1?page={pages}").get_data(as_text=True)
    assert "Đoạn số 299" in last and "Đoạn số 299" not in first


def test_a_chapter_is_rendered_once_for_all_its_readers_and_again_when_its_links_change(client, book, monkeypatch):
    from appliance.storage import db as dbmod
    from appliance.storage.catalog import update_book
    from appliance.web.views.public import reader

    reads = []
    read_member = reader.read_member
    monkeypatch.setattr(reader, "read_member",
                        lambda path, href, **limit: reads.append(href) or read_member(path, href, **limit))
    first = client.get("/books/1/read/1").text
    assert client.get("/books/1/read/1").text == first
    client.set_cookie("rp", "31")  # another reader, larger dark text: the same chapter
    again = client.get("/books/1/read/1?page=2").text
    assert "Đoạn số" in again and "font-size:135%" in again
    assert len(reads) == 1
    # Under another address prefix, the chapter's links to pictures and chapters are made afresh.
    hostile = client.get("/books/1/read/2").text
    prefixed = client.get("/books/1/read/2", base_url="http://localhost/box/").text
    assert 'href="/books/1/read/0#b-top"' in hostile and 'src="/books/1/file/OEBPS/images/pic.png"' in hostile
    assert 'href="/box/books/1/read/0#b-top"' in prefixed and 'src="/box/books/1/file/OEBPS/images/pic.png"' in prefixed
    assert len(reads) == 3
    db = dbmod.connect(book.db_path)
    update_book(db, 1, language="ja")  # the language decides whether a chapter may be set vertically
    db.close()
    client.get("/books/1/read/1")
    assert len(reads) > 3


def test_right_to_left_books(client, book):
    html = client.get("/books/2/read/0").get_data(as_text=True)
    assert 'dir="rtl"' in html and 'lang="ar"' in html


def test_preferences_and_last_place_live_in_cookies(client, book):
    answer = client.get("/reader/settings?size=up&dark=1&back=/books/1/read/1")
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/books/1/read/1")
    html = client.get("/books/1/read/1?page=2").get_data(as_text=True)
    assert 'class="reading dark"' in html and "font-size:115%" in html
    home = client.get("/").get_data(as_text=True)
    assert "Continue reading" in home and "/books/1/read/1?page=2" in home
    assert client.get("/books/1/read").headers["Location"].endswith("/books/1/read/1?page=2")
    # No open redirect through the settings link.
    assert client.get("/reader/settings?size=up&back=//evil.example/").headers["Location"] == "/"
    assert client.get("/reader/settings?back=https://evil.example/").headers["Location"] == "/"


def test_book_page_has_actions_qr_and_chapters(client, book, settings, make_epub):
    html = client.get("/books/1").get_data(as_text=True)
    for text in ("Read now", "Download EPUB", "Download for offline reading", "Chương dài",
                 '<img src="/books/1/qr.svg" alt="QR code of this page" width="160" height="160" loading="lazy">'):
        assert text in html
    code = client.get("/books/1/qr.svg")
    assert code.status_code == 200 and code.mimetype == "image/svg+xml"
    assert code.data.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"') and b"<path" in code.data
    assert client.get("/books/1/qr.svg", headers={"If-None-Match": code.headers["ETag"]}).status_code == 304
    assert client.get("/books/99/qr.svg").status_code == 404
    import_files(settings, [make_epub(title="Ba chương", chapters=[("<i>Lạ</i> & \"mở\"", ["Một."]), ("", ["Hai."]),
                                                                      ("Cuối", ["Ba."])])])
    for path in ("/books/3", "/books/3/contents"):
        toc = re.search(r'<ol class="toc"[^>]*>(.*?)</ol>', client.get(path).text).group(1)
        assert re.findall(r'<li><a href="([^"]+)">(.*?)</a></li>', toc) == [
            ("/books/3/read/0", "&lt;i&gt;Lạ&lt;/i&gt; &amp; &#34;mở&#34;"), ("/books/3/read/1", "Chapter 2"),
            ("/books/3/read/2", "Cuối")], path


def test_offline_file_is_self_contained(client, book):
    answer = client.get("/books/1/offline")
    assert answer.status_code == 200
    assert 'filename="truyen-thu.html"' in answer.headers["Content-Disposition"]
    html = answer.get_data(as_text=True)
    assert "Mở đầu câu chuyện." in html and "Đoạn số 299" in html
    assert "data:image/png;base64," in html
    assert not re.search(r'(src|href)="(https?:)?//', html.replace('href="https://example.org/"', ""))
    assert "<script" not in html.lower()


def test_the_offline_file_is_made_once_and_sent_as_a_file_a_phone_can_resume(client, book, settings):
    """Made once and kept (derived data), then sent with an ETag and in ranges: a phone whose
    download the Wi-Fi cut asks for the rest; one that has the file gets 304. A librarian's edit
    makes a new file."""
    from appliance.storage import catalog
    from appliance.storage import db as dbmod

    whole = client.get("/books/1/offline")
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    etag = whole.headers["ETag"]
    kept = list((settings.home / "cache" / "offline").glob("*.html"))
    assert len(kept) == 1 and kept[0].read_bytes() == whole.data
    rest = client.get("/books/1/offline", headers={"Range": "bytes=1000-", "If-Range": etag})
    assert rest.status_code == 206 and rest.data == whole.data[1000:]
    assert 'filename="truyen-thu.html"' in rest.headers["Content-Disposition"]
    assert client.get("/books/1/offline", headers={"If-None-Match": etag}).status_code == 304
    assert client.get("/books/1/offline").data == whole.data
    db = dbmod.connect(settings.db_path)
    try:
        catalog.update_book(db, 1, title="Truyện đã sửa")
    finally:
        db.close()
    edited = client.get("/books/1/offline", headers={"If-None-Match": etag})
    assert edited.status_code == 200 and edited.headers["ETag"] != etag
    assert "Truyện đã sửa" in edited.get_data(as_text=True)
    # A range asked of the old file gets the new one whole (If-Range no longer matches).
    assert client.get("/books/1/offline", headers={"Range": "bytes=1000-", "If-Range": etag}).data == edited.data


def test_offline_files_are_kept_within_a_size_and_not_into_the_disk_reserve(client, book, settings, monkeypatch,
                                                                           app):
    from appliance.books import offline

    first = client.get("/books/1/offline").data
    monkeypatch.setattr(offline, "CACHE_MAX_BYTES", len(first) + 10)
    client.get("/books/2/offline")
    kept = list((settings.home / "cache" / "offline").glob("*.html"))
    assert len(kept) == 1 and kept[0].read_bytes() != first  # the older one went
    # A box whose disk is nearly full keeps nothing more, and still sends the file, in ranges too.
    for path in kept:
        path.unlink()
    monkeypatch.setattr(services(app).library, "settings", settings.replace(disk_reserve_mb=10**9))
    answer = client.get("/books/1/offline")
    assert answer.status_code == 200 and answer.data == first
    assert client.get("/books/1/offline", headers={"Range": "bytes=0-99"}).data == first[:100]
    assert not list((settings.home / "cache" / "offline").glob("*.html"))


def test_poster_and_language_choice(client, book, settings):
    html = client.get("/poster").get_data(as_text=True)
    assert html.count("<svg") >= 2 and settings.wifi_ssid in html and settings.local_domain in html
    answer = client.get("/language/fr")
    assert answer.status_code == 303
    assert client.get("/language/xx").status_code == 404


def test_nothing_found_page_suggests_other_ways(client, book):
    html = client.get("/search?q=Đường+xa+lắm").get_data(as_text=True)
    assert "Nothing found" in html
    assert "/search?q=duong+xa+lam" in html
    assert "/browse" in html


def test_home_and_css_are_small(client, book):
    home = client.get("/").get_data()
    css = client.get("/static/site.css").get_data()
    assert len(home) + len(css) < 30 * 1024


@pytest.mark.parametrize("language, expected, direction", [
    ("vi", "Sách mới về", "ltr"), ("fr", "Nouveautés", "ltr"), ("ar", "وصل حديثًا", "rtl"), ("en", "New arrivals", "ltr"),
])
def test_interface_speaks_the_readers_languages(client, book, language, expected, direction):
    html = client.get("/", headers={"Accept-Language": language}).get_data(as_text=True)
    assert expected in html and f'dir="{direction}"' in html and f'lang="{language}"' in html
    chosen = client.get("/language/vi")
    assert chosen.status_code == 303
    assert "Sách mới về" in client.get("/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    client.delete_cookie("lang")
    found = client.get("/search?q=truyen", headers={"Accept-Language": language}).get_data(as_text=True)
    assert {"vi": "Tìm thấy 1 cuốn sách", "fr": "1 livre trouvé", "ar": "عُثر على 1 كتاب",
            "en": "1 book found"}[language] in found  # a plural, in a macro's page too


def test_pages_revalidate_with_etags(client, book):
    first = client.get("/books/1")
    assert first.headers.get("ETag")
    again = client.get("/books/1", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_vertical_japanese_sample_is_set_vertically(client, settings, shared_dir):
    book = shared_dir / "corpus" / "epub3-samples" / "kusamakura-japanese-vertical-writing.epub"
    import_files(settings, [book])
    html = client.get("/books/1/read/2").get_data(as_text=True)
    assert 'class="chapter vertical"' in html and 'lang="ja"' in html
    assert "<ruby>" in html  # furigana kept


def test_language_names_table_matches_babel():
    """ui/language-names.json (languages' own names) is what CLDR says; `python -m appliance.langnames` rewrites it."""
    import json

    from babel import localedata

    from appliance.langnames import TABLE, language_name, name_from_babel

    table = json.loads(TABLE.read_text(encoding="utf-8"))
    expected = {i: n for i in localedata.locale_identifiers() if (n := name_from_babel(i))}
    assert table == expected
    assert language_name("vi") == "Tiếng Việt" and language_name("fr-CA") == "Français (Canada)"
    assert language_name("ar") == "العربية" and language_name("xx-bogus") == "xx-bogus" and language_name("") == "?"


def test_language_names_in_the_interfaces_languages_match_babel():
    """ui/language-names-ui.json (names of languages in vi, en, fr, ar) is what CLDR says."""
    import json

    from appliance.langnames import NAMES_IN_UI, names_in_ui_from_babel

    assert json.loads(NAMES_IN_UI.read_text(encoding="utf-8")) == names_in_ui_from_babel()

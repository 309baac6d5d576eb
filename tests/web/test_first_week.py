"""What a village's first week finds on the reader's and the librarian's pages."""
from __future__ import annotations

import re

from tests.conftest import import_files
from tests.support.admin import post_form


def test_a_books_subjects_link_to_their_lists(settings, make_epub, client):
    import_files(settings, [make_epub(title="Trồng lúa", subjects=["Nông nghiệp", "Sách hướng dẫn"])])
    book = client.get("/books/1").get_data(as_text=True)
    links = re.findall(r'<li><a href="(/subjects/\d+)">([^<]+)</a></li>', book)
    assert [name for _href, name in links] == ["Nông nghiệp", "Sách hướng dẫn"]
    listed = client.get(links[0][0]).get_data(as_text=True)
    assert "Trồng lúa" in listed


def test_the_welcome_text_keeps_its_paragraphs(admin_client):
    text = "Chào mừng bà con đến thư viện.\r\n\r\nThư viện mở cửa từ 7 giờ sáng.\r\nMượn sách miễn phí."
    saved = post_form(admin_client, "/admin/welcome", {"text": text})
    assert saved.status_code == 303
    home = admin_client.get("/").get_data(as_text=True)
    welcome = re.search(r'<section class="welcome">(.*?)</section>', home, re.S).group(1)
    assert re.findall(r"<p dir=\"auto\">(.*?)</p>", welcome, re.S) == [
        "Chào mừng bà con đến thư viện.", "Thư viện mở cửa từ 7 giờ sáng.\nMượn sách miễn phí."]


def test_a_refused_search_says_why_in_the_pages_language(client):
    client.set_cookie("lang", "vi")
    for path in ("/search?q=" + "a" * 500, "/search?q=sach&page=99999999", "/search?q=sach&page=x"):
        page = client.get(path)
        assert page.status_code == 400, path
        body = page.get_data(as_text=True)
        assert not re.search(r"too long|must be|whole number|between", body), (path, body)
        assert "quá dài" in body or "số nguyên" in body or "phải từ" in body


def test_a_wish_is_marked_answered_once_its_book_arrives(admin_client, settings, make_epub):
    """The wish list keeps what readers looked for in vain; when a book that answers it arrives, the
    librarian sees it answered (and where), listed after the wishes still open."""
    import time

    from appliance.stats import counts as stats
    from appliance.storage.db import catalog_session

    with catalog_session(settings.db_path) as db:
        stats.write_events(db, [stats.Event("search", 0, "chuyen ma", 0, time.monotonic())] * 4
                           + [stats.Event("search", 0, "nuoi ong", 0, time.monotonic())] * 2)
    page = admin_client.get("/admin/stats").get_data(as_text=True)
    assert "chuyen ma" in page and "answered" not in page
    import_files(settings, [make_epub(title="Chuyện ma làng Vũ Đại")])
    page = admin_client.get("/admin/stats").get_data(as_text=True)
    wishes = re.findall(r"<li>(chuyen ma|nuoi ong) \(\d+\)(.*?)</li>", page)
    assert [term for term, _rest in wishes] == ["nuoi ong", "chuyen ma"]
    assert "answered: 1 book found now" in wishes[1][1] and "/search?q=chuyen+ma" in wishes[1][1]


def test_the_language_field_takes_a_name_and_refuses_what_is_no_language(admin_client, settings, make_epub):
    from appliance.storage import catalog
    from appliance.storage.db import catalog_session

    import_files(settings, [make_epub(title="Sách thử", language="en")])
    admin_client.set_cookie("lang", "vi")
    for typed, stored in (("Tiếng Việt", "vi"), ("vietnamien", "vi"), ("French", "fr"), ("ar", "ar")):
        saved = post_form(admin_client, "/admin/books/1", {"title": "Sách thử", "language": typed})
        assert saved.status_code == 303, (typed, saved.get_data(as_text=True)[-500:])
        with catalog_session(settings.db_path) as db:
            assert catalog.get_book(db, 1)["language"] == stored, typed
    refused = post_form(admin_client, "/admin/books/1", {"title": "Sách thử", "language": "xx"})
    assert refused.status_code == 400
    assert "không phải là một ngôn ngữ" in refused.get_data(as_text=True)


def test_until_the_clock_is_set_the_usage_page_says_why_the_days_are_empty(admin_client, settings, make_epub):
    import time

    from appliance.stats import counts as stats
    from appliance.storage.db import catalog_session

    import_files(settings, [make_epub(title="Truyện cổ tích")])
    with catalog_session(settings.db_path) as db:
        stats.write_events(db, [stats.Event("view", 1, "", -1, time.monotonic())] * 21)
    page = admin_client.get("/admin/stats").get_data(as_text=True)
    notice = page.index('id="clock-notice"')
    assert notice < page.index("Books opened per day")
    assert "Not dated yet" in page and "Nothing yet" not in page.split("Most read")[0]


def test_a_cover_upload_with_too_many_pixels_is_refused_before_decoding(admin_client, settings, make_epub):
    """A 30-megapixel picture in a small file (one colour compresses well) would take about 120 MB
    to decode; a JPEG that large still shrinks as it decodes, a PNG does not."""
    import io

    from PIL import Image

    import_files(settings, [make_epub(title="Sách bìa")])
    png = io.BytesIO()
    Image.new("P", (6000, 5000)).save(png, "PNG")
    assert len(png.getvalue()) < 200_000
    answer = post_form(admin_client, "/admin/books/1/cover", {"cover": (io.BytesIO(png.getvalue()), "big.png")},
                       page="/admin/books/1", content_type="multipart/form-data")
    assert answer.status_code == 400
    assert "too many pixels" in answer.get_data(as_text=True)


def test_an_untitled_chapter_has_the_same_name_in_the_offline_copy_as_on_the_page(settings, make_epub, client):
    from appliance.storage import catalog
    from appliance.storage.db import catalog_session

    import_files(settings, [make_epub(title="Không tên", chapters=[("", ["Đoạn một."]), ("", ["Đoạn hai."])])])
    with catalog_session(settings.db_path) as db:
        assert [c["title"] for c in catalog.get_book(db, 1)["chapters"]] == ["", ""]
    client.set_cookie("lang", "vi")
    page = client.get("/books/1").get_data(as_text=True)
    offline = client.get("/books/1/offline").get_data(as_text=True)
    for name in ("Chương 1", "Chương 2"):
        assert name in page and name in offline, name
    client.set_cookie("lang", "fr")  # another language, another file (and ETag)
    assert "Chapitre 2" in client.get("/books/1/offline").get_data(as_text=True)


def test_the_book_page_loads_a_cover_made_for_its_size(settings, make_epub, client):
    """The page shows its cover 160 px wide: it asks for the thumbnail, and a 320 px one for sharp
    screens (srcset), never the full-size picture (680 KB for some books)."""
    import io

    from PIL import Image

    import_files(settings, [make_epub(title="Bìa lớn")])
    page = client.get("/books/1").get_data(as_text=True)
    img = re.search(r'<img class="cover" src="([^"]+)" srcset="([^"]+)"', page)
    assert img and img.group(1) == "/books/1/thumbnail"
    assert img.group(2) == "/books/1/thumbnail 1x, /books/1/cover/320 2x"
    sharp = client.get("/books/1/cover/320")
    assert sharp.status_code == 200 and sharp.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(sharp.data)).width == 320
    assert Image.open(io.BytesIO(client.get("/books/1/cover").data)).width == 600  # the full-size one
    assert client.get("/books/1/cover/321").status_code == 404
    again = client.get("/books/1/cover/320", headers={"If-None-Match": sharp.headers["ETag"].strip('"')})
    assert again.status_code == 304

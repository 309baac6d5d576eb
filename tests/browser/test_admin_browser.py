"""The librarian's upload-and-edit flow in a real Chromium at phone size."""
from __future__ import annotations

import pytest

from appliance.books.demo import make_cover_png
from appliance.storage import accounts as auth
from tests.conftest import import_files
from tests.support.admin import PASSWORD, catalog_db
from tests.support.browser import follow, phone_page

pytestmark = pytest.mark.browser


def test_setup_upload_edit_cover_hide_remove(live_server, settings, make_epub, tmp_path):
    db = catalog_db(settings)
    code = auth.prepare_setup_code(settings, db)
    db.close()
    epub = make_epub(title="Sổ tay trồng lúa", authors=["Nhóm khuyến nông"])
    cover = tmp_path / "cover.png"
    cover.write_bytes(make_cover_png("Bìa mới", (30, 120, 60)))
    base = live_server.url
    with phone_page() as page:
        page.goto(base + "/admin/")
        assert page.url.endswith("/admin/setup")
        page.fill("#code", code)
        page.fill("#username", "mai")
        page.fill("#password", PASSWORD)
        page.fill("#password2", PASSWORD)
        follow(page, "form.stack button[type=submit]")
        assert page.url.rstrip("/").endswith("/admin")
        page.screenshot(path="/tmp/admin-dashboard.png")

        page.goto(base + "/admin/upload")
        page.set_input_files("#files", str(epub))
        follow(page, "form.stack button[type=submit]")
        assert "added to the catalog" in page.content()
        page.screenshot(path="/tmp/admin-upload.png", full_page=True)

        page.goto(base + "/admin/books")
        follow(page, "text=Sổ tay trồng lúa")
        page.fill("#title", "Sổ tay trồng lúa nước")
        page.fill("#subjects", "Nông nghiệp")
        follow(page, "text=Save")
        assert "Saved" in page.content()
        page.set_input_files("#cover", str(cover))
        follow(page, "text=Use this cover")
        assert "new cover is saved" in page.content()
        page.screenshot(path="/tmp/admin-edit.png", full_page=True)
        edit_url = page.url

        book_id = int(edit_url.rstrip("/").split("/")[-1])
        public = page.request.get(f"{base}/books/{book_id}")
        assert public.status == 200 and "Sổ tay trồng lúa nước" in public.text()
        cover_bytes = page.request.get(f"{base}/books/{book_id}/cover").body()
        assert cover_bytes[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xe1")

        follow(page, "text=Hide from readers")
        assert "hidden from readers" in page.content()
        assert page.request.get(f"{base}/books/{book_id}").status == 404

        follow(page, "text=Remove this book…")
        follow(page, "text=Remove the book")
        assert "removed from the catalog" in page.content()
        assert page.request.get(f"{base}/admin/books/{book_id}").status == 404


def test_book_html_cannot_run_script_in_the_admin_session(live_server, settings, make_epub):
    hostile = ('<img src=x onerror="document.title=\'pwned\'">'
               '<script>document.title="pwned";fetch("/pwned")</script>')
    import_files(settings, [make_epub(title="Truyện " + hostile, description=hostile,
                                      chapters=[("Chương " + hostile, ["<script>alert(1)</script>"])])])
    db = catalog_db(settings)
    auth.create_admin(db, "mai", PASSWORD)
    db.close()
    requests = []
    with phone_page() as page:
        page.on("request", lambda r: requests.append(r.url))
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(live_server.url + "/admin/login")
        page.fill("#username", "mai")
        page.fill("#password", PASSWORD)
        follow(page, "form.stack button[type=submit]")
        assert page.url.rstrip("/").endswith("/admin")
        for path in ("/admin/books", "/admin/books/1", "/admin/", "/books/1", "/search?q=truyen"):
            answer = page.goto(live_server.url + path)
            assert answer.status == 200 and page.url.endswith(path), path
            assert page.title() != "pwned", path
        assert dialogs == []
        assert not any("/pwned" in url for url in requests)

"""The librarian's pages on an open Wi-Fi: login, CSRF, rate limits, uploads, headers, first start."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from appliance.storage import accounts as auth
from appliance.web.context import services
from tests.support.admin import PASSWORD, catalog_db, log_in, post_form


def admin_endpoints(app) -> list[tuple[str, str]]:
    """(method, url) of every admin page, with a made-up id where the rule has one."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint in ("admin.login", "admin.setup"):
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = url.replace(f"<int:{arg}>", "1").replace(f"<{arg}>", "x")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_every_admin_page_refuses_without_login(app, client, librarian):
    endpoints = admin_endpoints(app)
    assert len(endpoints) >= 15
    for method, url in endpoints:
        answer = client.open(url, method=method, data={"csrf_token": "x"})
        if method == "GET":
            assert answer.status_code == 303 and "/admin/login" in answer.headers["Location"], url
        else:
            assert answer.status_code == 403, (method, url, answer.status_code)


def test_form_without_or_with_wrong_csrf_token_is_refused(admin_client, settings):
    for data in ({"title": "x"}, {"title": "x", "csrf_token": "forged"}):
        answer = admin_client.post("/admin/welcome", data=data)
        assert answer.status_code == 400
        assert "did not come from this library" in answer.get_data(as_text=True)
    ok = post_form(admin_client, "/admin/welcome", {"welcome": "Chào mừng!"})
    assert ok.status_code in (200, 303)


def test_sixth_wrong_password_in_a_minute_is_refused(app, client, librarian):
    now = [1000.0]
    services(app).limiter.clock = lambda: now[0]
    for _ in range(5):
        assert log_in(client, password="wrong password").status_code == 403
    sixth = log_in(client, password="wrong password")
    assert sixth.status_code == 429 and int(sixth.headers["Retry-After"]) > 0
    right = log_in(client)  # even the right password waits
    assert right.status_code == 429
    now[0] += 61
    assert log_in(client).status_code == 303


def test_logout_ends_the_session(admin_client):
    cookie = admin_client.get_cookie("library_admin", path="/admin")
    assert cookie is not None
    assert admin_client.get("/admin/").status_code == 200
    assert post_form(admin_client, "/admin/logout", page="/admin/").status_code == 303
    assert admin_client.get("/admin/").status_code == 303
    admin_client.set_cookie("library_admin", cookie.value, path="/admin")  # replaying the old cookie
    assert admin_client.get("/admin/").status_code == 303


def test_session_cookie_flags(app, librarian):
    client = app.test_client()
    answer = log_in(client)
    cookie = next(h for h in answer.headers.getlist("Set-Cookie") if h.startswith("library_admin="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie


def test_first_start_needs_the_setup_code_and_it_works_once(app, client, settings):
    db = catalog_db(settings)
    code = auth.prepare_setup_code(settings, db)
    db.close()
    assert code
    assert client.get("/admin/login").headers["Location"].endswith("/admin/setup")
    fields = {"username": "mai", "password": PASSWORD, "password2": PASSWORD}
    wrong = post_form(client, "/admin/setup", {**fields, "code": "WRONG123"})
    assert wrong.status_code == 403
    ok = post_form(client, "/admin/setup", {**fields, "code": code.lower()})
    assert ok.status_code == 303
    assert client.get("/admin/").status_code == 200
    other = app.test_client()
    again = post_form(other, "/admin/setup", {**fields, "username": "intruder", "code": code},
                      page="/admin/login")
    assert again.status_code in (303, 400, 403)
    db = catalog_db(settings)
    assert [a["username"] for a in auth.list_admins(db)] == ["mai"]
    assert auth.setup_code_active(db) is False
    db.close()


def test_no_default_account_and_admin_create_from_the_console(runner, settings):
    db = catalog_db(settings)
    assert auth.admin_count(db) == 0
    db.close()
    result = runner.invoke(["admin", "create", "lan"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    db = catalog_db(settings)
    admin = auth.authenticate(db, "lan", PASSWORD)
    stored = db.execute("SELECT password_hash FROM admins").fetchone()[0]
    db.close()
    assert admin is not None and PASSWORD not in stored and stored.startswith("scrypt")


def files_outside(root: Path, home: Path) -> set[Path]:
    return {p for p in root.rglob("*") if home not in p.parents and p != home}


def upload(client, name: str, data: bytes):
    return post_form(client, "/admin/upload", {"files": (io.BytesIO(data), name)},
                     content_type="multipart/form-data")


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        info = zipfile.ZipInfo("OEBPS/big.xhtml")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(2048):  # 2 GB of zeros, a few MB packed
                f.write(chunk)
    return buffer.getvalue()


def test_bad_uploads_are_refused_with_clear_messages(admin_client, settings, make_epub, tmp_path):
    good = make_epub(title="Sách thật")
    before = files_outside(tmp_path, settings.home)
    text = upload(admin_client, "notes.epub", b"just some text, not a zip")
    assert text.status_code == 400 and "refused" in text.get_data(as_text=True)
    bomb = upload(admin_client, "bomb.epub", zip_bomb())
    body = bomb.get_data(as_text=True)
    assert bomb.status_code == 400 and "refused" in body
    for name in ("../../escape.epub", "/etc/passwd.epub", "a\0b.epub", "..\\..\\x.epub"):
        answer = upload(admin_client, name, good.read_bytes())
        assert answer.status_code in (200, 400)
    assert files_outside(tmp_path, settings.home) == before  # nothing written outside the data folder
    assert not (settings.home.parent / "escape.epub").exists()
    names = [r[0] for r in catalog_db(settings).execute("SELECT file_name FROM books")]
    assert all("/" not in n and "\\" not in n and "\0" not in n for n in names)


def test_huge_upload_is_refused_before_it_is_read(app, librarian, settings):
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    client = app.test_client()
    log_in(client)
    answer = upload(client, "huge.epub", b"\0" * (2 * 1024 * 1024))
    assert answer.status_code == 413
    assert "too big" in answer.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/", "/search?q=a", "/admin/login", "/opds"])
def test_security_headers_everywhere(client, url):
    answer = client.get(url)
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_hostile_book_metadata_is_inert_on_admin_pages(admin_client, settings, make_epub):
    from tests.conftest import import_files

    hostile = '<script>document.title="pwned"</script><img src=x onerror="alert(1)">'
    import_files(settings, [make_epub(title="Sách " + hostile, description=hostile)])
    page = admin_client.get("/admin/books").get_data(as_text=True)
    assert "<script>document.title" not in page and "onerror=\"alert" not in page
    assert "&lt;script&gt;" in page


def test_admin_passwords_are_salted_slow_hashes(settings):
    a = auth.hash_password(PASSWORD)
    b = auth.hash_password(PASSWORD)
    assert a != b and auth.verify_password(PASSWORD, a) and not auth.verify_password("other", a)
    assert os.environ.get("LIBRARY_ADMIN_PASSWORD") is None


def test_channels_page_follows_and_stops_following(admin_client, settings):
    assert "follows no channel yet" in admin_client.get("/admin/channels").get_data(as_text=True)
    answer = post_form(admin_client, "/admin/channels", {"name": "vi-literature"})
    assert answer.status_code == 303
    page = admin_client.get("/admin/channels").get_data(as_text=True)
    assert "vi-literature" in page and "Stop following" in page
    bad = post_form(admin_client, "/admin/channels", {"name": "../etc"}, page="/admin/channels")
    bad_page = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "not allowed" in bad_page
    assert bad_page.count('class="error"') == 1  # said once, at the top
    stop = post_form(admin_client, "/admin/channels/vi-literature/unsubscribe", page="/admin/channels")
    assert stop.status_code == 303
    from content_sync.sync import apply

    db = catalog_db(settings)
    assert apply.subscribed_channels(db) == []
    db.close()


def test_system_page_shows_sync_and_sync_now_needs_a_hub(admin_client):
    html = admin_client.get("/admin/system").get_data(as_text=True)
    assert "last success: never" in html and "Sync now" in html
    answer = post_form(admin_client, "/admin/sync", page="/admin/system")
    assert answer.status_code == 303
    assert "No hub address" in admin_client.get("/admin/system").get_data(as_text=True)


def _job_process(settings) -> int:
    """The pid of the librarian's job's process (a child of this one, for this test's data folder),
    once it is there."""
    from appliance.discovery import wait_for
    from tests.support.processes import child_running

    home = json.dumps(str(settings.home)).encode()  # as the settings passed on to it spell it
    found = wait_for(lambda: child_running(os.getpid(), b"appliance.jobs.child", home), 10, step=0.005)
    assert found, "no job process started"
    return found


def test_the_rebuild_button_rebuilds_in_a_process_of_its_own_while_searches_use_the_current_index(
        admin_client, settings, make_epub):
    """The librarian's "Rebuild index" runs in a process of its own (held here while it is stopped):
    meanwhile a search for a word inside a chapter still finds its book in full text, the state
    reads "rebuilding" and a second press is refused; at the end the new index answers."""
    import signal

    from tests.conftest import import_files

    import_files(settings, [make_epub(title="Đường về bản", chapters=[("Một", ["Tiếng khèn vọng lại từ đồi."])])])
    before = sorted(p.name for p in settings.index_dir.glob("gen-*"))
    answer = post_form(admin_client, "/admin/system/reindex", page="/admin/system")
    job = _job_process(settings)
    os.kill(job, signal.SIGSTOP)
    try:
        assert "Searches use the current one until the new one is ready" in \
            admin_client.get(answer.headers["Location"]).get_data(as_text=True)
        page = admin_client.get("/search?q=khen+vong").get_data(as_text=True)
        assert "Đường về bản" in page and "only titles and authors" not in page
        again = post_form(admin_client, "/admin/system/reindex", page="/admin/system", follow_redirects=True)
        assert "already being rebuilt" in again.get_data(as_text=True)
        assert "<strong>rebuilding</strong>" in admin_client.get("/admin/system").get_data(as_text=True)
    finally:
        os.kill(job, signal.SIGCONT)
    jobs = services(admin_client.application).jobs
    jobs.join(30)
    assert not jobs.rebuild_running()
    assert sorted(p.name for p in settings.index_dir.glob("gen-*")) != before
    assert "Đường về bản" in admin_client.get("/search?q=khen+vong").get_data(as_text=True)
    assert "<strong>current</strong>" in admin_client.get("/admin/system").get_data(as_text=True)


def test_a_rebuild_that_fails_says_so_and_leaves_the_index_serving(admin_client, settings, make_epub):
    from tests.conftest import import_files

    import_files(settings, [make_epub(title="Đường về bản", chapters=[("Một", ["Tiếng khèn vọng lại từ đồi."])])])
    lock = settings.index_dir / "rebuild.lock"
    lock.unlink()
    lock.mkdir()  # the rebuild cannot take its lock: its process ends with an error
    post_form(admin_client, "/admin/system/reindex", page="/admin/system")
    jobs = services(admin_client.application).jobs
    jobs.join(30)
    page = admin_client.get("/admin/system").get_data(as_text=True)
    assert "The last rebuild failed; searches use the index as it was." in page
    assert "<strong>failed</strong>" not in page  # the index itself is as good as before the press
    assert "Đường về bản" in admin_client.get("/search?q=khen+vong").get_data(as_text=True)


def _no_package() -> bytes:
    """A zip an upload takes for an EPUB (its mimetype says so) that holds no package document."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("OEBPS/chapter.xhtml", "<html><body><p>Một trang.</p></body></html>")
    return buffer.getvalue()


def _quarantine_rows(settings) -> list[dict]:
    db = catalog_db(settings)
    try:
        return [dict(r) for r in db.query("SELECT id, sha256, file_name, reason FROM quarantine")]
    finally:
        db.close()


def test_a_quarantined_file_is_read_again_or_removed_from_the_system_page(admin_client, settings):
    upload(admin_client, "hong.epub", _no_package())
    [entry] = _quarantine_rows(settings)
    copies = list(settings.quarantine_dir.iterdir())
    assert len(copies) == 1 and "no OPF package document" in entry["reason"]
    page = admin_client.get("/admin/system").get_data(as_text=True)
    assert "Read it again" in page and "Remove" in page

    again = post_form(admin_client, f"/admin/quarantine/{entry['id']}/retry", {"back": "system"}, page="/admin/system")
    assert again.status_code == 303 and again.headers["Location"].endswith("/admin/system")
    shown = admin_client.get("/admin/system").get_data(as_text=True)
    assert "hong.epub still cannot be read: no OPF package document found" in shown
    assert [r["file_name"] for r in _quarantine_rows(settings)] == ["hong.epub"]
    assert list(settings.quarantine_dir.iterdir()) == copies  # one copy still, not a second
    assert not any(p.name.startswith("retry-") for p in (settings.home / "staging" / "uploads").iterdir())

    copy = admin_client.get(f"/admin/quarantine/{entry['id']}/file")  # to pass on to whoever can mend it
    assert copy.status_code == 200 and copy.data == _no_package()
    assert copy.headers["Content-Disposition"].startswith("attachment") and "hong.epub" in copy.headers["Content-Disposition"]

    removed = post_form(admin_client, f"/admin/quarantine/{entry['id']}/remove", {"back": "upload"},
                        page="/admin/system")
    assert removed.status_code == 303 and removed.headers["Location"].endswith("/admin/upload")
    assert "hong.epub is taken out of quarantine" in admin_client.get("/admin/upload").get_data(as_text=True)
    assert _quarantine_rows(settings) == [] and list(settings.quarantine_dir.iterdir()) == []
    gone = post_form(admin_client, f"/admin/quarantine/{entry['id']}/retry", page="/admin/system")
    assert gone.status_code == 404
    assert admin_client.get(f"/admin/quarantine/{entry['id']}/file").status_code == 404


def test_a_good_book_quarantined_by_a_crash_is_read_again_into_the_catalog(admin_client, settings, make_epub):
    """A worker killed in a large import quarantines a readable book ("unexpected error while
    reading"); reading it again from the system page brings it in under its own name."""
    from appliance.books import quarantine
    from appliance.messages import say
    from appliance.storage.blobs import sha256_file

    book = make_epub(title="Sách bị kẹt", name="sach-bi-ket.epub")
    db = catalog_db(settings)
    quarantine.keep(settings, db, book, sha256_file(book),
                    say("unexpected error while reading: %(detail)s", detail="BrokenProcessPool: a worker died"))
    db.close()
    [entry] = _quarantine_rows(settings)
    answer = post_form(admin_client, f"/admin/quarantine/{entry['id']}/retry", page="/admin/system",
                       follow_redirects=True)
    assert "sach-bi-ket.epub could be read this time and is now in the catalog." in answer.get_data(as_text=True)
    assert _quarantine_rows(settings) == [] and list(settings.quarantine_dir.iterdir()) == []
    db = catalog_db(settings)
    assert [tuple(r) for r in db.execute("SELECT title, file_name FROM books")] == [("Sách bị kẹt", "sach-bi-ket.epub")]
    db.close()


def test_importing_a_quarantined_file_after_all_takes_it_out_of_quarantine(settings, make_epub):
    from appliance.books import quarantine
    from appliance.messages import say
    from appliance.storage.blobs import sha256_file
    from tests.conftest import import_files

    book = make_epub(title="Về sau đọc được")
    db = catalog_db(settings)
    quarantine.keep(settings, db, book, sha256_file(book), say("the file is empty"))
    db.close()
    assert len(_quarantine_rows(settings)) == 1
    report = import_files(settings, [book])
    assert len(report.imported) == 1
    assert _quarantine_rows(settings) == [] and list(settings.quarantine_dir.iterdir()) == []


def test_reading_again_a_file_whose_copy_was_deleted_by_hand_says_so(admin_client, settings):
    upload(admin_client, "hong.epub", _no_package())
    [entry] = _quarantine_rows(settings)
    for copy in settings.quarantine_dir.iterdir():
        copy.unlink()
    answer = post_form(admin_client, f"/admin/quarantine/{entry['id']}/retry", page="/admin/system",
                       follow_redirects=True)
    assert "hong.epub still cannot be read: The file is no longer in the quarantine folder." in \
        answer.get_data(as_text=True)
    assert len(_quarantine_rows(settings)) == 1  # kept for the librarian to remove

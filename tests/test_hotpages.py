"""The home page and OPDS roots kept whole for a few seconds: never stale where a reader would notice."""
from __future__ import annotations

from appliance import db as dbmod
from tests.conftest import import_files


def test_a_kept_home_page_shows_a_new_book_and_a_new_welcome_at_once(settings, make_epub, client):
    import_files(settings, [make_epub(title="Sông Đà")])
    first = client.get("/")
    assert first.status_code == 200 and "Sông Đà" in first.text
    assert client.get("/").data == first.data
    import_files(settings, [make_epub(title="Rừng xanh")])
    assert "Rừng xanh" in client.get("/").text
    db = dbmod.connect(settings.db_path)
    dbmod.put_setting(db, "welcome_text", "Chào mừng bà con bản Lả!")
    db.close()
    assert "Chào mừng bà con bản Lả!" in client.get("/").text


def test_each_reader_gets_the_page_for_their_language_and_place(settings, make_epub, client):
    import_files(settings, [make_epub(title="Sông Đà")])
    english = client.get("/").text
    client.set_cookie("lang", "vi")
    vietnamese = client.get("/").text
    assert vietnamese != english and 'lang="vi"' in vietnamese and 'lang="en"' in english
    client.delete_cookie("lang")
    assert client.get("/", headers={"Accept-Language": "fr"}).text != english
    assert client.get("/").text == english


def test_kept_answers_revalidate_and_answer_head(settings, make_epub, client):
    import_files(settings, [make_epub(title="Sông Đà")])
    for path in ("/", "/opds", "/opds/v2"):
        first = client.get(path)
        etag = first.headers["ETag"]
        assert first.headers["Content-Security-Policy"] and first.headers["X-Frame-Options"] == "DENY"
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.data == b"", path
        assert client.get(path, headers={"If-None-Match": '"other"'}).data == first.data
        head = client.head(path)
        assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag
    import_files(settings, [make_epub(title="Rừng xanh")])
    assert client.get("/", headers={"If-None-Match": etag}).status_code == 200


def test_only_plain_successful_answers_are_kept_and_only_for_their_seconds(monkeypatch):
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from appliance import hotpages

    calls = []
    state = {"counter": 1}

    def app(environ, start_response):
        calls.append(environ["PATH_INFO"])
        path = environ["PATH_INFO"]
        if path == "/broken":
            response = Response("no", status=500)
        else:
            response = Response(f"page {len(calls)}")
            if path == "/cookie":
                response.set_cookie("a", "b")
        return response(environ, start_response)

    now = [100.0]
    monkeypatch.setattr(hotpages.time, "monotonic", lambda: now[0])
    kept = hotpages.HotPages(app, {"/": 5.0, "/broken": 5.0, "/cookie": 5.0}, lambda: state["counter"])
    client = Client(kept)
    assert client.get("/").text == client.get("/").text == "page 1"
    assert client.get("/?page=2").text == "page 2"  # a query string is never kept
    now[0] += 6
    assert client.get("/").text == "page 3"
    state["counter"] += 1
    assert client.get("/").text == "page 4"
    assert client.get("/broken").status_code == 500 and client.get("/broken").status_code == 500
    client.get("/cookie")
    client.get("/cookie")
    assert calls.count("/broken") == 2 and calls.count("/cookie") == 2

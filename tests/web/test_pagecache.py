"""The home page, OPDS roots and search pages kept whole for a few seconds: never stale where a reader would notice."""
from __future__ import annotations

from appliance.storage import db as dbmod
from appliance.web.context import services
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

    from appliance.web import pagecache as hotpages

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


def test_a_search_asked_again_is_answered_once_and_counted_each_time(app, settings, make_epub, client, monkeypatch):
    import_files(settings, [make_epub(title="Sông Đà")])
    index = services(app).library.index
    searches = []
    real_search = index.search
    monkeypatch.setattr(index, "search", lambda *a, **k: searches.append(a) or real_search(*a, **k))
    first = client.get("/search?q=song+da")
    assert "Sông Đà" in first.text
    for _ in range(4):
        assert client.get("/search?q=song+da").data == first.data
    assert len(searches) == 1
    assert "Sông Đà" in client.get("/search?q=song").text and len(searches) == 2  # other words: another search
    services(app).library.stats.flush()
    db = dbmod.connect(settings.db_path)
    counted = dict(db.execute("SELECT term, sum(count) FROM stats_counts WHERE kind = 'search' GROUP BY term").fetchall())
    db.close()
    assert counted == {"song da": 5, "song": 1}


def test_readers_in_other_places_of_their_books_share_a_search_page_but_not_across_languages(app, settings, make_epub,
                                                                                             monkeypatch):
    import_files(settings, [make_epub(title="Sông Đà")])
    index = services(app).library.index
    searches = []
    real_search = index.search
    monkeypatch.setattr(index, "search", lambda *a, **k: searches.append(a) or real_search(*a, **k))
    pages = []
    for last in ("1.0.1", "1.2.1", None):
        reader = app.test_client()
        if last:
            reader.set_cookie("last", last)
        pages.append(reader.get("/search?q=song").text)
    assert len(searches) == 1 and pages[0] == pages[1] == pages[2]
    reader = app.test_client()
    reader.set_cookie("lang", "vi")
    reader.set_cookie("last", "1.0.1")
    assert 'lang="vi"' in reader.get("/search?q=song").text and len(searches) == 2


def test_a_kept_search_page_follows_the_index_at_once(settings, make_epub, client):
    from appliance.search.index import SearchIndex

    import_files(settings, [make_epub(title="Sông Đà"), make_epub(title="Sông Hồng")])
    assert "2 books found" in client.get("/search?q=song").text
    # The index changes without the catalog (as when it catches up after an import).
    index = SearchIndex(settings.index_dir)
    index.remove_books([1])
    index.close()
    page = client.get("/search?q=song").text
    assert "1 book found" in page and "Sông Hồng" in page and "Sông Đà" not in page


def test_kept_bodies_stay_under_their_bytes_and_the_query_string_is_part_of_the_key():
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from appliance.web import pagecache as hotpages

    calls = []

    def app(environ, start_response):
        calls.append(environ["QUERY_STRING"])
        size = int(environ["QUERY_STRING"].partition("=")[2] or 10)
        return Response("x" * size)(environ, start_response)

    kept = hotpages.HotPages(app, {"/s": hotpages.Kept(60.0, with_query=True)}, lambda: 0, max_bytes=1000)
    client = Client(kept)
    for query in ("n=200", "n=201", "n=202", "n=200", "n=201", "n=202"):
        assert len(client.get("/s?" + query).data) == int(query[2:])
    assert calls == ["n=200", "n=201", "n=202"]  # 603 bytes kept
    client.get("/s?n=203")
    client.get("/s?n=204")  # 1,010 bytes: the oldest (n=200) makes way
    assert kept._kept.bytes <= 1000 and len(kept._kept) == 4
    client.get("/s?n=200")
    assert calls[-1] == "n=200"
    client.get("/s?n=300")
    client.get("/s?n=300")  # more than a quarter of the bytes: answered each time, never kept
    assert calls.count("n=300") == 2

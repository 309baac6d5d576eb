"""Reading costly books: what a request costs does not grow with the book. A huge chapter, deep nesting,
thousands of chapters and thousands of zip entries each answer in moments, and an offline copy stays
within its cap. Books are made here, just past each limit (or let in by a lowered one, as books
imported before the limits were)."""
from __future__ import annotations

import threading
import time

import pytest

from appliance.books import container, offline
from appliance.books.importer import Importer
from appliance.storage import db as dbmod
from appliance.web.context import services
from appliance.web.views.public import reader
from tests.support import hostile


@pytest.fixture
def library(settings):
    """library(*paths, **settings changes) -> a test client of a box holding those books (no search index)."""
    apps = []

    def make(*paths, **changes):
        from appliance.web.factory import create_app

        changed = settings.replace(**changes)
        db = dbmod.connect(changed.db_path)
        try:
            report = Importer(changed, db, None).import_paths(list(paths))
        finally:
            db.close()
        assert len(report.imported) == len(paths), report.quarantined
        app = create_app(changed, TESTING=True)
        apps.append(app)
        return app.test_client()

    container._open_archive.cache_clear()
    yield make
    for app in apps:
        services(app).library.close()


def at_once(count: int, get) -> tuple[list, float]:
    """``get()`` in ``count`` threads at once: (the answers, seconds for all)."""
    answers: list = [None] * count

    def one(n: int) -> None:
        answers[n] = get()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, time.monotonic() - started


def count_calls(monkeypatch, module, name: str) -> list:
    calls: list = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_chapter_over_the_limit_answers_at_once_without_rendering(library, tmp_path, monkeypatch):
    client = library(hostile.big_chapter_epub(tmp_path / "big.epub", 600_000))
    monkeypatch.setattr(reader, "MAX_CHAPTER_BYTES", 512 * 1024)  # as a 50 MB chapter against 4 MB
    renders = count_calls(monkeypatch, reader.bookhtml, "clean_chapter")
    started = time.monotonic()
    page = client.get("/books/1/read/1")
    assert page.status_code == 200 and time.monotonic() - started < 1
    assert "This chapter cannot be shown" in page.get_data(as_text=True)
    assert renders == []
    assert client.get("/books/1/read/0").status_code == 200  # the rest of the book reads as before


def test_the_offline_copy_stays_within_its_cap(library, tmp_path):
    client = library(hostile.big_chapter_epub(tmp_path / "big.epub", 1_500_000), offline_html_max_mb=1)
    answer = client.get("/books/1/offline")
    assert answer.status_code == 200
    data = answer.get_data()
    assert len(data) <= 1024 * 1024  # it was 52 MB for a 20 MB cap
    assert b"A short first chapter." in data and b"too long for one file" in data


def test_a_deeply_nested_chapter_is_shown_as_text_quickly_to_many_readers(library, tmp_path):
    client = library(hostile.deep_epub(tmp_path / "deep.epub", 60_000))
    answers, seconds = at_once(8, lambda: client.get("/books/1/read/1"))
    assert seconds < 5  # eight held every server thread for 170 s
    for answer in answers:
        assert answer.status_code == 200
        assert "<p>At the bottom of the well.</p>" in answer.get_data(as_text=True)


def test_the_offline_copy_of_thousands_of_chapters_is_made_once_from_one_opening(library, tmp_path, monkeypatch):
    client = library(hostile.many_chapters_epub(tmp_path / "chapters.epub", 3_000))
    container._open_archive.cache_clear()
    openings = count_calls(monkeypatch, container, "_open_zip")
    builds = count_calls(monkeypatch, offline, "build_offline_html")
    answers, seconds = at_once(4, lambda: client.get("/books/1/offline"))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.get_data() for a in answers}) == 1 and b"Paragraph of part 2999." in answers[0].get_data()
    assert len(builds) == 1 and len(openings) == 1
    assert seconds < 20  # ten minutes for 10,000 chapters, the zip opened again for each


def test_pictures_of_a_zip_of_many_entries_cost_no_more_than_of_a_small_one(library, tmp_path, monkeypatch):
    client = library(hostile.many_entries_epub(tmp_path / "entries.epub", container.MAX_ZIP_ENTRIES - 100))
    container._open_archive.cache_clear()
    openings = count_calls(monkeypatch, container, "_open_zip")
    started = time.monotonic()
    for n in range(30):
        assert client.get(f"/books/1/file/OEBPS/images/missing{n}.png").status_code == 404
    assert client.get("/books/1/file/OEBPS/images/cover.png").status_code == 200
    assert len(openings) == 1  # each request read the whole directory: 0.5 s for 65,000 entries
    assert time.monotonic() - started < 2

"""A catalog made by an earlier version of the box opens with today's code: upgraded, nothing run twice."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.db import catalog_session

# Made by tests/storage/make_old_catalog.py from the last commit whose migrations ran out of their
# names' order (m030 before m020).
OLD = Path(__file__).parent / "data" / "catalog-e36aa85.db"


@pytest.fixture
def old_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(OLD, home / "catalog.db")
    return home


def applied(db) -> list[str]:
    return [row[0] for row in db.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]


def test_an_old_catalog_keeps_its_books_librarian_and_counts(old_home):
    with catalog_session(old_home / "catalog.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        titles = {row[0] for row in db.execute("SELECT title FROM books")}
        assert titles == {"Truyện ngắn", "Thơ"}
        assert [row[0] for row in db.execute("SELECT username FROM admins")] == ["thu"]
        assert db.execute("SELECT name FROM channels").fetchall() == [("vi-literature",)]
        counts = dict(db.execute("SELECT kind, sum(count) FROM stats_counts GROUP BY kind").fetchall())
        assert counts == {"view": 3, "search": 1}


def test_its_migrations_are_known_by_their_new_names_and_none_runs_again(old_home):
    with catalog_session(old_home / "catalog.db") as db:
        names = applied(db)
    assert names == [m.name for m in dbmod.migrations._migrations]
    assert names == sorted(names)  # named in the order they run
    assert not set(names) & set(dbmod.OLD_MIGRATION_NAMES)
    # Opening it again changes nothing.
    with catalog_session(old_home / "catalog.db") as db:
        assert applied(db) == names
        assert not dbmod.migrations.pending(db)


def test_the_box_serves_an_old_catalog(old_home):
    from appliance.web.factory import create_app

    app = create_app(Settings(home=old_home))
    client = app.test_client()
    page = client.get("/search?q=truyen")
    assert page.status_code == 200
    assert "Truyện ngắn" in page.get_data(as_text=True)

"""Shared fixtures: settings in a temp folder, the app, a test client, the CLI, and a live server."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.books.demo import DemoBook, DemoChapter, write_epub
from appliance.settings import Settings
from appliance.web.context import services

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "corpus").is_dir():
        pytest.skip("../shared/corpus is not present")
    return SHARED


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Tests read the English interface unless they ask for another language.
    return Settings(home=tmp_path / "home", disk_reserve_mb=0, default_locale="en")


@pytest.fixture
def make_epub(tmp_path: Path):
    """make_epub(title=..., authors=..., language=..., chapters=[(title, [paragraphs])], **write_epub options)."""
    counter = {"n": 0}

    def make(title: str = "Sách thử", authors=("Tác Giả",), language: str = "vi",
             chapters=(("Chương một", ("Đoạn văn thứ nhất.",)),), subjects=(), description: str = "",
             folder: Path | None = None, name: str | None = None, **options) -> Path:
        counter["n"] += 1
        book = DemoBook(
            title=title, authors=tuple(authors), language=language, subjects=tuple(subjects),
            description=description,
            chapters=tuple(DemoChapter(t, tuple(p)) for t, p in chapters),
        )
        target = (folder or tmp_path / "epubs") / (name or f"book-{counter['n']:03d}.epub")
        return write_epub(target, book, **options)

    return make


@pytest.fixture
def app(settings: Settings):
    from appliance.web.factory import create_app

    app = create_app(settings, TESTING=True)
    yield app
    services(app).library.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(settings: Settings):
    """runner.invoke(args) runs the ``library`` command against the test's data folder."""
    from appliance.cli.areas import register_commands
    from appliance.cli.main import cli

    register_commands(cli)
    click_runner = CliRunner()

    class Runner:
        def invoke(self, args, **kwargs):
            return click_runner.invoke(cli, ["--home", str(settings.home), *args], catch_exceptions=False, **kwargs)

    return Runner()


def import_files(settings: Settings, paths) -> object:
    """Import files into the settings' catalog and bring the index up to date; returns the report."""
    from appliance.books.importer import Importer
    from appliance.search.index import SearchIndex
    from appliance.storage import db as dbmod

    db = dbmod.connect(settings.db_path)
    index = SearchIndex(settings.index_dir)
    try:
        return Importer(settings, db, index).import_paths(paths)
    finally:
        index.close()
        db.close()


@pytest.fixture
def demo_library(settings: Settings, tmp_path: Path) -> Settings:
    """The demo catalog imported and indexed."""
    from appliance.books.demo import write_demo_catalog

    import_files(settings, write_demo_catalog(tmp_path / "demo"))
    return settings


class LiveServer:
    def __init__(self, app):
        from appliance.server.http import create_server, serve_until

        self.app = app
        self.server = create_server(app, host="127.0.0.1", port=0, threads=8)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self.stopping = threading.Event()
        # The box's own loop: closing waitress's sockets from this thread would break its select.
        self.thread = threading.Thread(target=serve_until, args=(self.server, self.stopping, 0.05), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


from tests.support.admin import admin_client, librarian  # noqa: E402,F401  (fixtures for the librarian pages' tests)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """End a run that skipped tests by saying what brings them back (scripts/test installs it as root)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    packages = os.environ.get("LIBRARY_TEST_DEBIAN_PACKAGES",
                              "chromium minisign dnsmasq systemd iproute2 dnsutils hostapd fdisk zbar-tools")
    terminalreporter.write_sep("-", f"{len(skipped)} tests skipped (reasons above)")
    terminalreporter.write_line(f"To run them: sudo apt-get install -y {packages}, then scripts/test again "
                                f"(tests of the real books also need ../shared beside this checkout).")

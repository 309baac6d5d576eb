"""The web application factory. No network calls and no index work happen here."""
from __future__ import annotations

import logging
import secrets
import threading
import time

from flask import Flask, g
from werkzeug.routing import IntegerConverter

from appliance.lru import SizedLRU
from appliance.search.index import SearchIndex
from appliance.server.processes import Board
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.atomic import atomic_write_text
from appliance.storage.blobs import BlobStore
from ui import UI_DIR

logger = logging.getLogger(__name__)

REQUEST_CACHE_KB = 128  # SQLite page cache of each server thread: 512 KB was 3 MB more in 8 threads, and no faster
RENDERED_CHAPTERS_BYTES = 2 * 1024 * 1024  # chapters kept sanitized and cut into pages (views.reader)


class LibraryState:
    """What every request shares: settings, the blob store and the search index."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.blobs = BlobStore(settings.blobs_dir)
        from appliance.storage.catalog import chapter_loader

        # Snippets read chapter texts over the same per-thread connection as the request.
        self.index = SearchIndex(settings.index_dir, chapter_loader=chapter_loader(lambda: self.open_db().conn))
        self.index_lock = threading.Lock()
        self.rendered_chapters = SizedLRU(RENDERED_CHAPTERS_BYTES)
        self.index_state = "unknown"  # unknown | current | rebuilding | failed
        self.stats = None  # appliance.stats.counts.Recorder, set by create_app
        # When a request last came in (create_app notes it), this process's slot of the board
        # the server's processes share (appliance.server.processes).
        self.board = Board.private()
        self.slot = 0
        self._local = threading.local()
        self._connections: list = []
        self._connections_lock = threading.Lock()
        self._remembered: dict[str, tuple] = {}

    def remembered(self, name: str, key, seconds: float, compute):
        """``compute()``, kept in this process for ``seconds`` while ``key`` stays the same (for
        lists that cost a query of many rows and need not be newer than that)."""
        now = time.monotonic()
        found = self._remembered.get(name)
        if found is not None and found[0] == key and now < found[1]:
            return found[2]
        value = compute()
        self._remembered[name] = (key, now + seconds, value)
        return value

    def note_request(self) -> None:
        self.board.note(self.slot)

    def idle_seconds(self) -> float:
        """How long no request has come in to any of the server's processes (or since the state
        was made)."""
        return time.monotonic() - self.board.latest()

    def open_db(self):
        """The catalog connection of this thread, opened once and kept: opening one per request
        cost more than most pages' queries. create_app applied the migrations; a request's
        connection does not check them again."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = dbmod.connect(self.settings.db_path, migrate=False)
            # Each server thread keeps its connection: a small page cache each (the operating
            # system caches the file for all of them).
            db.execute(f"PRAGMA cache_size = -{REQUEST_CACHE_KB}")
            with self._connections_lock:
                self._connections.append(db)
        return db

    def connect_db(self):
        """A new catalog connection, for work outside requests (the caller closes it)."""
        return dbmod.connect(self.settings.db_path, migrate=False)

    def release_db(self, db) -> None:
        """End what a request left open on its connection (an error inside a transaction)."""
        if db.conn.in_transaction:
            db.conn.rollback()

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self.index.close()
        if self.stats is not None:
            try:
                self.stats.flush()
            except Exception:
                logger.exception("could not write the last statistics")


def _secret_key(settings: Settings) -> str:
    """A per-box secret for signing cookies, made once and kept in the data folder."""
    path = settings.keys_dir / "web-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        atomic_write_text(path, key + "\n", mode=0o600)
        return key


def get_db():
    """The catalog connection of this request (opened on first use, closed at teardown)."""
    if "db" not in g:
        g.db = library_state().open_db()
    return g.db


def library_state() -> LibraryState:
    from flask import current_app

    return current_app.extensions["library"]


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in the routes: a number SQLite can hold (a larger one is a page that does not
    exist, 404, not an OverflowError when it reaches the catalog)."""

    def __init__(self, url_map, fixed_digits: int = 0, min: int | None = None, max: int | None = 2**63 - 1,
                 signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


def create_app(settings: Settings | None = None, **config) -> Flask:
    settings = settings or Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    app = Flask(
        __name__,
        template_folder=str(UI_DIR / "templates"),
        static_folder=str(UI_DIR / "static"),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        MAX_CONTENT_LENGTH=settings.upload_max_mb * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        JSON_AS_ASCII=False,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.json.ensure_ascii = False
    app.config.update(config)
    app.url_map.converters["int"] = RowIdConverter  # before the views add their routes
    state = LibraryState(settings)
    app.extensions["library"] = state
    # Make sure the schema exists before the first request (cheap; no index work).
    dbmod.connect(settings.db_path).close()
    from appliance.stats.counts import init_stats

    state.stats = init_stats(settings.db_path)

    @app.teardown_appcontext
    def close_db(exc):
        conn = g.pop("db", None)
        if conn is not None:
            state.release_db(conn)

    from appliance.books.uploads import init_uploads
    from appliance.web.errors import register_error_handlers
    from appliance.web.i18n import init_i18n
    from appliance.web.security import init_security
    from appliance.web.views import register_blueprints

    init_i18n(app, settings)
    init_security(app)
    init_uploads(app)
    register_blueprints(app)
    register_error_handlers(app)
    @app.after_request
    def revalidate(response):
        """HTML pages carry an ETag so a phone coming back gets 304 and downloads nothing."""
        from flask import request

        if (request.method == "GET" and response.status_code == 200 and response.mimetype == "text/html"
                and not response.direct_passthrough and "ETag" not in response.headers):
            response.add_etag()
            response.make_conditional(request)
        return response

    from appliance.discovery import template_context

    app.context_processor(template_context)

    from appliance.web import i18n
    from appliance.web.pagecache import HotPages, Kept
    from appliance.web.views.public.home import HOME_SECONDS
    from appliance.web.views.public.opds import ROOT_SECONDS
    from appliance.web.views.public.search import SEARCH_SECONDS

    app.wsgi_app = HotPages(app.wsgi_app, {"/": HOME_SECONDS, "/opds": ROOT_SECONDS, "/opds/": ROOT_SECONDS,
                                           "/opds/v2": ROOT_SECONDS,
                                           "/search": Kept(SEARCH_SECONDS, with_query=True, state=state.index.stamp,
                                                           cookies=(i18n.COOKIE,))},
                            lambda: dbmod.page_state(state.open_db()))
    app.wsgi_app = _noting_requests(app.wsgi_app, state)
    from appliance.jobs.registry import Jobs

    app.extensions["jobs"] = Jobs(app)
    return app


def _noting_requests(wsgi_app, state: LibraryState):
    """``wsgi_app`` noting when each request comes in, kept pages included (work that would slow
    readers' pages waits until nobody has asked anything for a while: appliance.jobs.registry)."""

    def noted(environ, start_response):
        state.note_request()
        return wsgi_app(environ, start_response)

    return noted

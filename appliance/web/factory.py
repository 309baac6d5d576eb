"""The web application factory. No network calls and no index work happen here."""
from __future__ import annotations

import logging

from flask import Flask, g, request
from werkzeug.routing import IntegerConverter

from appliance.books.uploads import init_uploads
from appliance.jobs.registry import Jobs
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.keys import web_secret
from appliance.web import i18n
from appliance.web.context import EXTENSION, template_context
from appliance.web.errors import register_error_handlers
from appliance.web.i18n import init_i18n
from appliance.web.pagecache import LIFETIMES, HotPages, Kept
from appliance.web.portalmemory import PortalMemory
from appliance.web.ratelimit import FailureLimiter
from appliance.web.security import init_security
from appliance.web.services import BoxServices, LibraryState, NoVans
from appliance.web.views import register_blueprints
from ui import UI_DIR

logger = logging.getLogger(__name__)

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
        SECRET_KEY=web_secret(settings.keys_dir),
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
    app.extensions[EXTENSION] = BoxServices(
        library=state,
        jobs=Jobs(state),
        portal=PortalMemory(settings.portal_memory_minutes),
        limiter=FailureLimiter(max_failures=5, window_seconds=60),  # wrong librarian passwords
        vans=NoVans(),  # the server's start puts the box's discovery here
    )
    # Make sure the schema exists before the first request (cheap; no index work).
    dbmod.connect(settings.db_path).close()
    from appliance.stats.counts import init_stats

    state.stats = init_stats(settings.db_path)

    @app.teardown_appcontext
    def close_db(exc):
        conn = g.pop("db", None)
        if conn is not None:
            state.release_db(conn)

    init_i18n(app, settings)
    init_security(app)
    init_uploads(app, settings)
    register_blueprints(app)
    register_error_handlers(app)
    @app.after_request
    def revalidate(response):
        """HTML pages carry an ETag so a phone coming back gets 304 and downloads nothing."""
        if (request.method == "GET" and response.status_code == 200 and response.mimetype == "text/html"
                and not response.direct_passthrough and "ETag" not in response.headers):
            response.add_etag()
            response.make_conditional(request)
        return response

    app.context_processor(template_context)
    app.wsgi_app = HotPages(app.wsgi_app, {
        "/": LIFETIMES["home"], "/opds": LIFETIMES["opds-root"], "/opds/": LIFETIMES["opds-root"],
        "/opds/v2": LIFETIMES["opds-root"],
        "/search": Kept(LIFETIMES["search"], with_query=True, state=state.index.stamp, cookies=(i18n.COOKIE,)),
    }, lambda: dbmod.page_state(state.open_db()))
    app.wsgi_app = _noting_requests(app.wsgi_app, state)
    return app


def _noting_requests(wsgi_app, state: LibraryState):
    """``wsgi_app`` noting when each request comes in, kept pages included (work that would slow
    readers' pages waits until nobody has asked anything for a while: appliance.jobs.registry)."""

    def noted(environ, start_response):
        state.note_request()
        return wsgi_app(environ, start_response)

    return noted

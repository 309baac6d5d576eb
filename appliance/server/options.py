"""How the box's HTTP server is set up from its settings: where it spools bodies, how large they may be."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from werkzeug.http import parse_cookie

from appliance.books.uploads import clean_staging
from appliance.server.http import PER_CLIENT_CONNECTIONS, BodyLimits
from appliance.settings import Settings
from appliance.storage.accounts import SESSION_COOKIE, session_admin
from appliance.storage.db import catalog_session

logger = logging.getLogger(__name__)


def server_temp_folder(settings: Settings) -> Path:
    return settings.staging_dir / "tmp"


def prepare_server(settings: Settings, processes: int = 1) -> dict[str, object]:
    """At server start (in its first process): clear what interrupted uploads left, then
    ``server_options``."""
    clean_staging(settings)
    shutil.rmtree(server_temp_folder(settings), ignore_errors=True)
    return server_options(settings, processes)


def server_options(settings: Settings, processes: int = 1) -> dict[str, object]:
    """For each process of the server: keep its temporary files (waitress spools request bodies
    over 512 KB to them) in the data folder rather than in /tmp, which is RAM on many boxes, and
    return waitress options capping the request body size."""
    folder = server_temp_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(folder)
    # A little above the upload limit on the two pages that take files, so that Flask answers a
    # slightly bigger upload with its own page saying the limit, and waitress refuses a hugely
    # bigger one, or a big body anywhere else, before reading it.
    upload = (settings.upload_max_mb + 16) * 1024 * 1024
    # Each process counts its own connections, and the kernel spreads a client's among them: a
    # share each keeps one address near PER_CLIENT_CONNECTIONS in all (never under 8 a process, as
    # a phone's browser opens up to 6 to one host and they may all land on one process).
    per_client = max(8, -(-PER_CLIENT_CONNECTIONS // max(1, processes)))
    limits = BodyLimits(prefixes={"/admin/upload": upload, "/admin/books/": upload},
                        may_send_more=lambda headers: librarian_asks(settings, headers))
    return {"per_client": per_client, "body_limits": limits}


def librarian_asks(settings: Settings, headers: dict) -> bool:
    """Whether a request's cookies hold a live librarian session (read once its headers are in,
    before its body: a big body is taken from a librarian only)."""
    cookie = parse_cookie(headers.get("COOKIE", "")).get(SESSION_COOKIE)
    if not cookie:
        return False
    try:
        with catalog_session(settings.db_path, migrate=False) as db:
            return session_admin(db, cookie) is not None
    except Exception:  # a catalog that cannot be read: no big bodies, the pages say why
        logger.exception("could not check a librarian's session before an upload")
        return False

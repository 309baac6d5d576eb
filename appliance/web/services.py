"""What the box's web app shares between requests, built once by the factory: ``BoxServices``."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from appliance.jobs.registry import IndexState
from appliance.lru import SizedLRU
from appliance.search.index import SearchIndex
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.storage.blobs import BlobStore
from appliance.storage.catalog import chapter_loader
from appliance.web.board import Board

logger = logging.getLogger(__name__)

REQUEST_CACHE_KB = 128  # SQLite page cache of each server thread: 512 KB was 3 MB more in 8 threads, and no faster
RENDERED_CHAPTERS_BYTES = 2 * 1024 * 1024  # chapters kept sanitized and cut into pages (views.reader)


class LibraryState:
    """What every request shares: settings, the blob store and the search index."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.blobs = BlobStore(settings.blobs_dir)
        # Snippets read chapter texts over the same per-thread connection as the request.
        self.index = SearchIndex(settings.index_dir, chapter_loader=chapter_loader(lambda: self.open_db().conn))
        self.index_lock = threading.Lock()
        self.rendered_chapters = SizedLRU(RENDERED_CHAPTERS_BYTES)
        self.index_state = IndexState.UNKNOWN
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



class NoVans:
    """What a box that does not listen for vans hears: none."""

    def vans(self) -> list:
        return []


@dataclass
class BoxServices:
    """Everything a request may use besides its own connection, in one typed object.

    In a server of several processes, a worker's ``jobs``, ``portal``, ``limiter`` and ``vans`` are
    proxies that ask the first process (appliance.server.processes), which holds the only ones."""

    library: LibraryState
    jobs: Any  # appliance.jobs.registry.Jobs, or a proxy to the first process's
    portal: Any  # appliance.web.portalmemory.PortalMemory, or a proxy
    limiter: Any  # appliance.web.ratelimit.FailureLimiter (wrong passwords), or a proxy
    vans: Any  # appliance.discovery.Discovery, NoVans, or a proxy: ``vans()`` lists vans nearby

    SHARED = ("jobs", "portal", "limiter", "vans")  # what a worker asks the first process for

"""Work the web server does beside the requests, never inside them."""
from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum

from appliance.jobs import child as childjobs
from appliance.search import upkeep as indexing
from appliance.search.errors import IndexBusy
from appliance.search.updates import COMPACT_SMALL_SEGMENTS

logger = logging.getLogger(__name__)


class IndexState(StrEnum):
    """The search index as the server sees it (the librarian's system page says which)."""

    UNKNOWN = "unknown"  # not looked at yet
    CURRENT = "current"  # every change of the catalog is in it
    REBUILDING = "rebuilding"  # being made anew; searches use the old one, or titles and authors
    FAILED = "failed"  # keeping it current failed; tried again

INDEX_CHECK_SECONDS = 5.0
# The books of the index's small segments are indexed again into one once no reader has asked
# anything for this long (it takes a core for a while: about a minute for a few hundred books here,
# several on a Pi).
COMPACT_IDLE_SECONDS = 300.0
COMPACT_RETRY_SECONDS = 3600.0  # after a compaction failed
# From this many books waiting (a release, an import by another process), the index takes them in a
# process of its own (appliance.jobs.child): each takes tens of milliseconds of a core (200 generated
# books: 13.5 s on the 2-core benchmark machine), more on a Pi. Fewer (a librarian's edit, an upload)
# are indexed in the keeper's thread, without starting a process (a third of a second of a core).
CHILD_CATCH_UP_BOOKS = 20


def keep_index_current(state, stop: threading.Event, interval: float = INDEX_CHECK_SECONDS,
                       compact_idle: float = COMPACT_IDLE_SECONDS) -> None:
    """Bring the index up to date at start (rebuilding it if broken), then replay new catalog
    changes (from imports, bundles or the admin pages) every few seconds, and compact the small
    segments those changes leave once the box has had no request for ``compact_idle`` seconds.
    Rebuilds, compactions and many changes are done by a process of its own (appliance.jobs.child)."""
    first = True
    busy = False  # the last turn found the index busy
    compact_after = 0.0  # monotonic time before which no compaction is tried
    while not stop.is_set():
        try:
            db = state.connect_db()
            try:
                with state.index_lock:
                    if first:
                        state.index_state = IndexState.REBUILDING if not state.index.is_usable() else state.index_state
                    if indexing.pending_count(db) >= CHILD_CATCH_UP_BOOKS:
                        childjobs.run(state.settings, "catch-up")
                    if first:
                        outcome = indexing.ensure_index(db, state.index, _rebuild_in_child(state))
                        logger.info("search index %s", outcome)
                        first = False
                    else:
                        indexing.catch_up(db, state.index, _rebuild_in_child(state))
                    state.index_state = IndexState.CURRENT
            finally:
                db.close()
        except IndexBusy as e:  # another process rebuilds it, or holds its writer: after that
            if not busy:
                logger.info("the search index is busy (%s); catching up after", e)
            busy = True
        except Exception:
            state.index_state = IndexState.FAILED
            logger.exception("keeping the search index current failed; will retry")
        else:
            busy = False
        if state.index_state == IndexState.CURRENT and state.idle_seconds() >= compact_idle and time.monotonic() >= compact_after:
            try:
                _compact(state)
            except IndexBusy:  # another process (an import) is writing to it: after the next idle spell
                compact_after = time.monotonic() + compact_idle
                logger.info("the search index is busy; compacting it later")
            except Exception:
                compact_after = time.monotonic() + COMPACT_RETRY_SECONDS
                logger.exception("compacting the search index's small segments failed; the index is as it was")
        stop.wait(interval)


def _compact(state) -> None:
    with state.index_lock:
        if state.index.small_segments() >= COMPACT_SMALL_SEGMENTS:
            childjobs.run(state.settings, "compact-index")  # searches go on, on the segments as they were


def _rebuild_in_child(state):
    """``indexing.rebuild`` as the keeper calls it: in a process of its own (see appliance.jobs.child)."""
    return lambda db, index: childjobs.run(state.settings, "rebuild-index")


def start_index_keeper(state, interval: float = INDEX_CHECK_SECONDS,
                       compact_idle: float = COMPACT_IDLE_SECONDS) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(target=keep_index_current, args=(state, stop, interval, compact_idle),
                              name="index-keeper", daemon=True)
    thread.start()
    return stop


class Jobs:
    """The work a librarian starts from the system page, each in a process of its own (see
    appliance.jobs.child) watched by a thread of this one, one of each kind at a time. A server of
    several processes has one, in its first process (the others ask it: appliance.server.processes), so a
    second press is refused whichever process answers it."""

    def __init__(self, state):
        """``state``: the web app's ``LibraryState`` (settings, the index and what it is in)."""
        self.state = state
        self._guard = threading.Lock()
        self._watchers: dict[str, threading.Thread] = {}
        self._failed: dict[str, bool] = {}

    def index_state(self) -> IndexState:
        """unknown, current, rebuilding or failed: rebuilding while the librarian's rebuild runs,
        else as the thread keeping the index sees it (a rebuild that failed leaves the index as it
        was: see ``rebuild_failed``)."""
        if self.rebuild_running():
            return IndexState.REBUILDING
        return self.state.index_state

    def rebuild_failed(self) -> bool:
        """Whether the librarian's last rebuild failed (until the next one starts)."""
        return bool(self._failed.get("rebuild-index"))

    def start_index_rebuild(self) -> bool:
        """Rebuild the search index; False when a rebuild started here still runs.

        Searches use the current index meanwhile; where there is none, titles and authors from the
        catalog (see appliance/search/finder.py)."""
        return self._start("rebuild-index")

    def rebuild_running(self) -> bool:
        return self._running("rebuild-index")

    def start_sync(self) -> bool:
        """Run every job of the sync agent once; False when one started here still runs."""
        return self._start("sync")

    def join(self, timeout: float | None = None) -> None:
        """Wait for the jobs started here (for tests)."""
        for watcher in list(self._watchers.values()):
            watcher.join(timeout)

    def _start(self, job: str) -> bool:
        with self._guard:
            if self._running(job):
                return False
            self._failed[job] = False
            watcher = threading.Thread(target=self._watch, args=(job,), name=job, daemon=True)
            self._watchers[job] = watcher
            watcher.start()
        return True

    def _running(self, job: str) -> bool:
        watcher = self._watchers.get(job)
        return watcher is not None and watcher.is_alive()

    def _watch(self, job: str) -> None:
        state = self.state
        try:
            childjobs.run(state.settings, job)
        except Exception:
            self._failed[job] = True
            logger.exception("the librarian's %s failed", job)
        else:
            if job == "rebuild-index":
                state.index_state = IndexState.CURRENT

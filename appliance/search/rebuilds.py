"""Rebuilding the search index, and the lock that keeps rebuilds apart.

Layout of the index folder (``LIBRARY_HOME/index``)::

    CURRENT              name of the live generation, replaced atomically
    rebuild.lock         held (flock) while a rebuild runs
    gen-000007/          a Whoosh index

``rebuild`` writes a new generation folder, flushes it to disk, then replaces
``CURRENT``; the old folder is deleted afterwards. A power cut at any moment
leaves ``CURRENT`` naming a complete index. Writing a generation, and waiting for the
writers of the old one, are the index's own (``appliance.search.index``).
"""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

from appliance.search.documents import IndexDoc
from appliance.search.errors import IndexBusy
from appliance.search.generations import IndexFolder, fsync_tree
from appliance.storage.locks import FileLock

logger = logging.getLogger(__name__)

__all__ = ["REBUILD_LOCK", "WRITE_TIMEOUT", "RebuildingFolder"]

REBUILD_LOCK = "rebuild.lock"
WRITE_TIMEOUT = 120.0  # seconds to wait for another writer before giving up


class RebuildingFolder(IndexFolder):
    """An index folder whose generations rebuilds replace, one at a time across processes.

    Writes of this object are serialized by ``_write_lock``. ``_new_generation``,
    ``_write_generation`` and ``_switch_over`` are the index's own (``SearchIndex``)."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self._write_lock = threading.RLock()
        self._rebuild_lock_held = False  # this object holds the rebuild lock (see _no_other_rebuild)

    @contextmanager
    def rebuild_held_off(self, wait: bool = False):
        """No rebuild (of any process) can start or run while this is held. For applying catalog
        changes and clearing them from the queue: a rebuild running meanwhile would switch to an
        index made from the catalog as it was before them, and they would be lost from it. Another
        process holding it (a rebuild, or changes being applied) gives IndexBusy, at once or, with
        ``wait``, after waiting for it as long as for a writer."""
        with self._no_other_rebuild(WRITE_TIMEOUT if wait else 0,
                                    "is being rebuilt or updated by another process; the changes wait in the queue"):
            yield

    @contextmanager
    def _no_other_rebuild(self, timeout: float, busy: str):
        """The rebuild lock, taken once per object (flock locks of one process conflict too)."""
        with self._write_lock:
            if self._rebuild_lock_held:
                yield
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.folder / REBUILD_LOCK)
            if not lock.acquire(timeout):
                raise IndexBusy(f"the search index in {self.folder} {busy}")
            self._rebuild_lock_held = True
            try:
                yield
            finally:
                self._rebuild_lock_held = False
                lock.release()

    def _start_empty(self) -> str:
        """Make the first, empty generation when the folder has no index at all."""
        with self._no_other_rebuild(WRITE_TIMEOUT, "is being rebuilt"):
            gen = self._current_gen()
            if gen is None:
                gen = self._new_generation()
                self._switch_to(gen)
            return gen

    def rebuild(self, docs: Iterable[IndexDoc] = (), *, parts: Sequence[Callable[[], Iterable[IndexDoc]]] = ()) -> int:
        """Index ``docs`` into a new generation, switch to it, delete the old one; returns the count.

        With ``parts`` instead, each part (a picklable function giving its books) is indexed by a
        process of its own into a segment of its own, all at once: faster where each part has a
        core (two parts on two cores: 1.4 times, BENCHMARKS.md). Books keep the order of the parts, so parts cut in book
        order index the books in the order ``docs`` would. Not for a web server's own process
        (it starts processes); a command or a worker calls it."""
        with self._no_other_rebuild(WRITE_TIMEOUT * 10, "is being rebuilt by another process"):
            old = self._current_gen()
            self.remove_leftovers()  # the lock is this object's already
            gen, count = self._write_generation(docs, parts)
            fsync_tree(self.folder / gen)
            self._switch_over(old, gen)
        logger.info("search index rebuilt in %s with %d books", self.folder / gen, count)
        return count

    def remove_leftovers(self) -> list[str]:
        """Delete the generations a rebuild left unfinished (killed, or cut by a power failure: up to
        the size of a whole index on the SD card); returns their names. Not while another process
        rebuilds (its new generation is one of them): then nothing."""
        try:
            with self.rebuild_held_off():
                current = self._current_gen()
                gone = sorted(p.name for p in self._generation_dirs() if p.name != current)
                for name in gone:
                    shutil.rmtree(self.folder / name, ignore_errors=True)
        except IndexBusy:
            return []
        if gone:
            logger.info("removed %s, left by a rebuild that did not finish", ", ".join(gone))
        return gone

    def _new_generation(self) -> str:
        """A new empty generation (not yet current)."""
        raise NotImplementedError

    def _write_generation(self, docs: Iterable[IndexDoc],
                          parts: Sequence[Callable[[], Iterable[IndexDoc]]]) -> tuple[str, int]:
        """A new generation (not yet current) holding ``docs``, or ``parts`` when given; its name
        and how many books it holds. Nothing of it is left when this fails."""
        raise NotImplementedError

    def _switch_over(self, old: str | None, gen: str) -> None:
        """Make ``gen`` current once no other process is writing to ``old``, then delete ``old``."""
        raise NotImplementedError

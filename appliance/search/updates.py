"""Updating the live index: each update one writer and one commit (a segment), the segments
merged only once there are many, and the books of small ones indexed again into one
(``compact``). Writers and segments are the index's own (``appliance.search.index``).
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from appliance.search.documents import IndexDoc
from appliance.search.rebuilds import RebuildingFolder

logger = logging.getLogger(__name__)

__all__ = ["COMPACT_MAX_BOOKS", "COMPACT_SMALL_SEGMENTS", "MAX_SEGMENTS", "UpdatingFolder", "small_ones"]

MAX_SEGMENTS = 32  # an index update merges segments only when there are this many
# ``compact`` indexes the books of the small segments (under half the books of the largest) again
# once there are this many, the smallest first and at most COMPACT_MAX_BOOKS books at a time (a few
# minutes of a Pi's core; larger segments wait for the merge at MAX_SEGMENTS or a reindex).
COMPACT_SMALL_SEGMENTS = 4
COMPACT_MAX_BOOKS = 2_000


class UpdatingFolder(RebuildingFolder):
    """Updates and compaction of the live generation, serialized with each other and with
    rebuilds (``_write_lock``). The writer, and what is done with it, are the index's own
    (``SearchIndex``): the methods below ``compact``."""

    def add_books(self, docs: Iterable[IndexDoc]) -> int:
        """Index ``docs``, replacing what the index had for the same books; one commit."""
        return self.update(docs)

    def remove_books(self, book_ids: Iterable[int]) -> None:
        """Remove the given books from the index (unknown ids are ignored)."""
        self.update(int(b) for b in book_ids)

    def update(self, changes: Iterable[IndexDoc | int]) -> int:
        """Apply ``changes`` with one writer and one commit (one new segment): an ``IndexDoc``
        replaces or adds its book, a book id removes it. ``changes`` is read as it is written, so
        it may be a generator reading books one at a time. Returns how many changes were applied."""
        changes = iter(changes)
        first = next(changes, None)
        if first is None:
            return 0
        with self._write_lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            gen = self._current_gen()
            if gen is None:
                gen = self._start_empty()
            writer = self._locked_writer(gen)
            try:
                count = self._apply(writer, itertools.chain([first], changes))
            except BaseException:
                self._cancel(writer)
                raise
            self._commit(writer, self.folder / gen)
        return count

    def compact(self, changes_for: Callable[[list[int]], Iterable[IndexDoc | int]]) -> int:
        """Once there are ``COMPACT_SMALL_SEGMENTS`` small segments (see ``small_ones``), index their
        books again into one and drop them; returns how many segments were dropped (0: none).
        ``changes_for(ids)`` gives the books as ``update`` takes them (the catalog's current version
        of each). The web server calls it when no reader has asked anything for a while.

        Each index update (a bundle, a librarian's edit, an import) adds a segment. A small segment
        takes several times the disk per book of a large one (each keeps its own dictionary of
        words and word pairs), and a search looks its words up in every segment: twenty imports of
        30 books took a 1,075-book index from 147 to 461 MB and its search p95 from 10 to 40 ms
        (BENCHMARKS.md). Indexing the small segments' books again took less than their imports
        did; Whoosh's own merge of such segments took twice as long as that.
        """
        with self._write_lock:
            gen = self._current_gen()
            if gen is None:
                return 0
            writer = self._locked_writer(gen)
            try:
                small = small_ones(self._segment_sizes(writer))
                if len(small) < COMPACT_SMALL_SEGMENTS:
                    self._cancel(writer)
                    return 0
                ids = sorted(self._book_ids_in(writer, small))
                self._apply(writer, changes_for(ids))
            except BaseException:
                self._cancel(writer)
                raise
            # Their books deleted, the small segments hold nothing: the commit leaves them out.
            self._commit(writer, self.folder / gen, drop_empty=True)
        self._release_readers()  # frees the dropped segments' files now
        logger.info("indexed the %d books of %d small segments of the search index again", len(ids), len(small))
        return len(small)

    def _locked_writer(self, gen: str):
        """A writer on the current generation, ``gen`` or the one a rebuild switched to meanwhile."""
        raise NotImplementedError

    def _apply(self, writer, changes: Iterable[IndexDoc | int]) -> int:
        """Write ``changes`` (see ``update``); returns how many there were."""
        raise NotImplementedError

    def _cancel(self, writer) -> None:
        raise NotImplementedError

    def _commit(self, writer, path: Path, drop_empty: bool = False) -> None:
        """Commit ``writer``'s work to the generation at ``path``, leaving out the segments that hold
        no books with ``drop_empty``."""
        raise NotImplementedError

    def _segment_sizes(self, writer) -> list[int]:
        """How many books each segment of ``writer``'s generation holds."""
        raise NotImplementedError

    def _book_ids_in(self, writer, segments: list[int]) -> set[int]:
        """The books with documents still in ``segments`` (their places in ``_segment_sizes``)."""
        raise NotImplementedError

    def _release_readers(self) -> None:
        """Close what reads the index, so that the files of dropped segments are freed."""
        raise NotImplementedError


def small_ones(counts: Sequence[int]) -> list[int]:
    """Of segments holding ``counts`` books (books still in them), those holding fewer than half
    the books of the largest, the smallest, as many as hold at most ``COMPACT_MAX_BOOKS`` books
    together: their places in ``counts``, smallest first."""
    largest = max(counts, default=0)
    chosen, books = [], 0
    for n in sorted((n for n, count in enumerate(counts) if count * 2 < largest), key=lambda n: counts[n]):
        if books + counts[n] > COMPACT_MAX_BOOKS:
            break
        chosen.append(n)
        books += counts[n]
    return chosen

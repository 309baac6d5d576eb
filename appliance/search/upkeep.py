"""Keeping the search index in step with the catalog.

The catalog is the source of truth. Each catalog change leaves a row in
``index_queue`` in the same transaction; ``catch_up`` replays the queue into
the index (idempotently) and ``rebuild`` makes a new index from the whole
catalog. Neither runs inside a web request.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path

import sqlite_utils

from appliance.search.documents import IndexDoc
from appliance.search.index import SearchIndex
from appliance.storage import catalog
from appliance.storage.db import catalog_session

logger = logging.getLogger(__name__)

PARALLEL_BOOKS = 200  # books from which a rebuild with several workers splits the work


def index_doc(db: sqlite_utils.Database, book_id: int) -> IndexDoc | None:
    book = catalog.get_book(db, book_id)
    if book is None:
        return None
    chapters = tuple(
        (c["position"], c["title"], catalog.chapter_text(db, book_id, c["position"]) or "")
        for c in book["chapters"]
    )
    return IndexDoc(
        book_id=book_id,
        title=book["title"],
        authors=tuple(book["authors"]),
        subjects=tuple(book["subjects"]),
        language=book["language"],
        description=book["description"],
        chapters=chapters,
    )


def all_docs(db: sqlite_utils.Database) -> Iterator[IndexDoc]:
    ids = [r[0] for r in db.execute("SELECT id FROM books WHERE hidden = 0 ORDER BY id")]
    for book_id in ids:
        doc = index_doc(db, book_id)
        if doc is not None:
            yield doc


def docs_in(db_path: str, book_ids: Sequence[int]) -> Iterator[IndexDoc]:
    """The books ``book_ids`` (those still there) read from the catalog file ``db_path``: one part
    of a rebuild, read in the worker process that indexes it."""
    with catalog_session(Path(db_path), migrate=False) as db:
        for book_id in book_ids:
            doc = index_doc(db, book_id)
            if doc is not None:
                yield doc


def parts_of(db: sqlite_utils.Database, count: int) -> list[Callable[[], Iterator[IndexDoc]]]:
    """The catalog's visible books in at most ``count`` runs of consecutive ids, as ``docs_in``
    calls, each run about an even share of the text not in the runs before it (what indexing a
    book costs goes with its text)."""
    sizes = db.execute(
        "SELECT b.id, coalesce(sum(length(c.text_z)), 0) + 1 FROM books b LEFT JOIN chapters c ON c.book_id = b.id "
        "WHERE b.hidden = 0 GROUP BY b.id ORDER BY b.id"
    ).fetchall()
    path = db.execute("PRAGMA database_list").fetchone()[2]
    left = sum(size for _, size in sizes)
    parts: list[list[int]] = [[]]
    share, taken = left / count, 0
    for book_id, size in sizes:
        if taken >= share and len(parts) < count:
            parts.append([])
            share, taken = left / (count - len(parts) + 1), 0
        parts[-1].append(book_id)
        taken += size
        left -= size
    return [partial(docs_in, path, ids) for ids in parts if ids]


def catch_up(db: sqlite_utils.Database, index: SearchIndex, rebuild_with: Callable[..., object] | None = None) -> int:
    """Apply pending index work; returns how many books were touched. Safe to repeat after a crash.

    One writer and one commit for all of it (each commit is a segment, and a search looks in every
    segment); books are read from the catalog one at a time as the writer takes them.

    Waits while another process applies changes; raises IndexBusy when it or a rebuild keeps the
    index longer than a writer is waited for: the changes stay in the queue for the first call
    after it (a rebuild read the catalog before some of them). An unusable
    index is rebuilt with ``rebuild_with(db, index)`` (``rebuild`` unless given)."""
    pending = _pending(db)
    if not pending:
        return 0
    if not index.is_usable():
        if not index.has_generation():  # a new data folder: nothing is wrong
            logger.info("making the search index from the catalog")
        else:
            logger.warning("search index unusable; rebuilding it from the catalog")
        (rebuild_with or rebuild)(db, index)
        return len(pending)
    with index.rebuild_held_off(wait=True):
        seqs = {p["book_id"]: p["seq"] for p in _pending(db)}  # the latest change of each book
        index.update(_changes(db, seqs))
        with db.atomic():
            for book_id, seq in seqs.items():
                # Only clear the entry if no newer change arrived meanwhile.
                db.execute("DELETE FROM index_queue WHERE book_id = ? AND seq = ?", [book_id, seq])
    return len(seqs)


def _pending(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT book_id, op, seq FROM index_queue ORDER BY seq"))


def pending_count(db: sqlite_utils.Database) -> int:
    """How many catalog changes wait for the index (the librarian's pages show it)."""
    return db.execute("SELECT count(*) FROM index_queue").fetchone()[0]


def _changes(db: sqlite_utils.Database, book_ids: Iterable[int]) -> Iterator[IndexDoc | int]:
    """Each book as the catalog has it now, read as the writer takes it (its id: removed)."""
    for book_id in book_ids:
        doc = index_doc(db, book_id)
        yield book_id if doc is None else doc


def compact(db: sqlite_utils.Database, index: SearchIndex) -> int:
    """Index the books of the index's small segments again, into one (``SearchIndex.compact``);
    returns how many segments that took away. IndexBusy while another process rebuilds the index
    (the rebuild makes one segment anyway)."""
    with index.rebuild_held_off():
        return index.compact(lambda book_ids: _changes(db, book_ids))


def rebuild(db: sqlite_utils.Database, index: SearchIndex, workers: int = 1) -> int:
    """Build a fresh index from the whole catalog and switch to it.

    With ``workers`` above 1 (a command's choice: it starts processes), catalogs of at least
    ``PARALLEL_BOOKS`` books are indexed in that many parts at once, a segment each."""
    mark = db.execute("SELECT coalesce(max(seq), 0) FROM index_queue").fetchone()[0]
    count = None
    if workers > 1 and catalog.count_books(db) >= PARALLEL_BOOKS:
        try:
            count = index.rebuild(parts=parts_of(db, workers))
        except BrokenProcessPool:  # a worker was killed (for memory?): the old index is still there
            logger.warning("a search index worker stopped; rebuilding in this process instead")
    if count is None:
        count = index.rebuild(all_docs(db))
    with db.atomic():
        db.execute("DELETE FROM index_queue WHERE seq <= ?", [mark])
    logger.info("search index rebuilt with %d books", count)
    return count


def ensure_index(db: sqlite_utils.Database, index: SearchIndex,
                 rebuild_with: Callable[..., object] | None = None) -> str:
    """Make the index usable and current: rebuild when missing or broken (with ``rebuild_with(db,
    index)``, ``rebuild`` unless given), else replay the queue. What an unfinished rebuild left is
    removed first.

    Returns "rebuilt", "caught-up" or "current".
    """
    rebuild_with = rebuild_with or rebuild
    index.remove_leftovers()
    if not index.is_usable():
        rebuild_with(db, index)
        return "rebuilt"
    touched = catch_up(db, index, rebuild_with)
    if touched:
        return "caught-up"
    # A book count mismatch means the index lost work (e.g. an old index folder was restored).
    indexed = index.book_ids()
    visible = {r[0] for r in db.execute("SELECT id FROM books WHERE hidden = 0")}
    if indexed != visible:
        rebuild_with(db, index)
        return "rebuilt"
    return "current"

"""Importing EPUB files: parse (pure) -> blobs -> catalog -> search index.

A file that cannot be read is copied into ``quarantine/`` with its reason and
never stops the batch. Re-importing the same file (same hash) is a no-op.
"""
from __future__ import annotations

import logging
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import sqlite_utils

from appliance.books import quarantine
from appliance.books.container import EpubUnreadable
from appliance.books.epub import BookRecord, read_epub
from appliance.messages import N_, Message, say
from appliance.search.errors import IndexBusy
from appliance.search.index import SearchIndex
from appliance.search.upkeep import catch_up, rebuild
from appliance.settings import Settings
from appliance.storage import catalog
from appliance.storage.atomic import NotEnoughDisk, free_bytes
from appliance.storage.blobs import BlobStore, sha256_file
from appliance.workerpool import process_pool

logger = logging.getLogger(__name__)

EPUB_SUFFIXES = (".epub",)
BULK_IMPORT_FILES = 1000  # files from which an import as large as the catalog rebuilds the index once
PARALLEL_FILES = 20  # files from which an importer with several workers reads them in worker processes


@dataclass
class ImportReport:
    imported: list[tuple[str, int]] = field(default_factory=list)  # (file, book id)
    duplicates: list[tuple[str, int]] = field(default_factory=list)
    quarantined: list[tuple[str, Message]] = field(default_factory=list)  # (file, reason)
    warnings: list[tuple[str, Message]] = field(default_factory=list)  # (file, warning)
    index_busy: bool = False  # another writer held the search index: the books wait in its queue

    @property
    def total(self) -> int:
        return len(self.imported) + len(self.duplicates) + len(self.quarantined)


def find_epubs(paths: Iterable[Path]) -> Iterator[Path]:
    """Files given directly, and every ``*.epub`` (any case) below given folders, in a stable order."""
    for path in paths:
        path = Path(path)
        if path.is_dir() and not path.is_symlink():
            found = []
            for folder, _subfolders, files in os.walk(path, followlinks=False):  # links are not followed
                found += (Path(folder, name) for name in files if Path(name).suffix.lower() in EPUB_SUFFIXES)
            yield from sorted(found)
        else:
            yield path


def record_to_new_book(record: BookRecord, *, file_name: str, cover_sha: str | None,
                       thumb_sha: str | None, source: str = "import") -> catalog.NewBook:
    return catalog.NewBook(
        sha256=record.sha256,
        size=record.size,
        title=record.title,
        authors=record.authors,
        language=record.language,
        declared_language=record.declared_language,
        subjects=record.subjects,
        description=record.description,
        publisher=record.publisher,
        published=record.date,
        identifier=record.identifier,
        file_name=file_name,
        cover_sha256=cover_sha,
        cover_type=record.cover_media_type if cover_sha else None,
        thumb_sha256=thumb_sha,
        warnings=record.warnings,
        source=source,
        chapters=[(c.href, c.title, c.html_bytes, c.text) for c in record.chapters],
    )


def store_record(db: sqlite_utils.Database, blobs: BlobStore, path: Path, record: BookRecord,
                 source: str = "import") -> int:
    """Put the file, cover and thumbnail in the blob store, then the book in the catalog."""
    blobs.put_file(path, expected_sha256=record.sha256)
    cover_sha = blobs.put_bytes(record.cover) if record.cover else None
    thumb_sha = blobs.put_bytes(record.thumbnail) if record.thumbnail else None
    return catalog.add_book(
        db, record_to_new_book(record, file_name=path.name, cover_sha=cover_sha, thumb_sha=thumb_sha, source=source)
    )


class Importer:
    """Imports EPUB files into the catalog (and the search index, when given one).

    With ``workers`` above 1 (a command's choice: it starts processes), the files of a large
    import are read by that many worker processes while this one stores what they read, in the
    files' order."""

    def __init__(self, settings: Settings, db: sqlite_utils.Database, index: SearchIndex | None,
                 workers: int = 1):
        self.settings = settings
        self.db = db
        self.index = index
        self.blobs = BlobStore(settings.blobs_dir)
        self.workers = max(1, workers)

    def import_file(self, path: Path, report: ImportReport) -> None:
        found = self._examine(path, report)
        if found is not None:
            self._store(path, *found, _read(path), report)

    def _examine(self, path: Path, report: ImportReport) -> tuple[str, int] | None:
        """(sha256, size) of a file not yet in the catalog; None (and the report says why) else."""
        try:
            kind = os.lstat(path).st_mode
            if not stat.S_ISREG(kind):  # a link, a FIFO, a device: never read, never copied to quarantine
                what = N_("a symbolic link") if stat.S_ISLNK(kind) else N_("not a regular file")
                report.quarantined.append((str(path), say(N_("skipped: %(what)s"), what=say(what))))
                return None
            sha = sha256_file(path)
            size = path.stat().st_size
        except OSError as e:
            report.quarantined.append((str(path), say(N_("cannot read the file: %(detail)s"), detail=str(e.strerror or e))))
            return None
        existing = catalog.book_id_by_sha(self.db, sha)
        if existing is not None:
            report.duplicates.append((str(path), existing))
            return None
        return sha, size

    def _store(self, path: Path, sha: str, size: int, read: BookRecord | Message, report: ImportReport) -> None:
        """Put what was read from ``path`` (its record, or why it is unreadable) in the catalog, or in
        quarantine."""
        existing = catalog.book_id_by_sha(self.db, sha)
        if existing is not None:  # the same file twice in one import, or stored meanwhile by another program
            report.duplicates.append((str(path), existing))
            return
        reserve = self.settings.disk_reserve_mb * 1024 * 1024
        self.settings.home.mkdir(parents=True, exist_ok=True)
        if free_bytes(self.settings.home) - 2 * size < reserve:
            raise NotEnoughDisk(N_("not enough free disk to import %(name)s: %(reserve)d MB must stay free"),
                                name=path.name, reserve=self.settings.disk_reserve_mb)
        if isinstance(read, Message):
            self._quarantine(path, sha, read, report)
            return
        book_id = store_record(self.db, self.blobs, path, read)
        quarantine.forget(self.settings, self.db, sha)  # read after all (a newer reader, or read again)
        report.imported.append((str(path), book_id))
        report.warnings.extend((str(path), w) for w in read.warnings)

    def _quarantine(self, path: Path, sha: str, reason: Message, report: ImportReport) -> None:
        quarantine.keep(self.settings, self.db, path, sha, reason)
        report.quarantined.append((str(path), reason))

    def import_paths(self, paths: Iterable[Path], progress: Callable[[Path], None] | None = None,
                     index_every: int = 50, index_every_max: int = 1000, bulk: bool = False) -> ImportReport:
        """Import every EPUB under ``paths``; the index is updated after the first ``index_every`` books,
        then after twice as many each time (up to ``index_every_max``), and at the end: new books become
        searchable soon, and a large import does not spend its time committing small index updates.

        With ``bulk`` the index is left as it is until the end and then rebuilt from the whole catalog
        (searches use the old index meanwhile): one segment instead of one per update, for an import
        as large as the catalog (see ``wants_bulk``)."""
        report = ImportReport()
        since_index = 0

        def done(path: Path, before: int) -> None:
            nonlocal since_index, index_every
            since_index += len(report.imported) - before
            if progress:
                progress(path)
            if self.index is not None and not bulk and since_index >= index_every:
                self._update_index(catch_up, report)
                since_index = 0
                index_every = min(index_every * 2, max(index_every, index_every_max))

        files = list(find_epubs(paths))
        if self.workers > 1 and len(files) >= PARALLEL_FILES:
            self._import_in_workers(files, report, done)
        else:
            for path in files:
                before = len(report.imported)
                self.import_file(path, report)
                done(path, before)
        if self.index is not None:
            if bulk and report.imported:
                logger.info("%d books imported; rebuilding the search index", len(report.imported))
                self._update_index(partial(rebuild, workers=self.workers), report)
            else:
                self._update_index(catch_up, report)
        return report

    def _import_in_workers(self, files: list[Path], report: ImportReport,
                           done: Callable[[Path, int], None]) -> None:
        """``import_file`` for each file, with the reading (most of the work) done ahead by worker
        processes, at most ``2 * workers`` files ahead. Files already in the catalog are not read.
        Should a worker die (killed for memory, or a crash in an image decoder), the files not yet
        read are read here, one by one, as without workers."""
        pending: deque[tuple[Path, str, int, Future]] = deque()
        with process_pool(self.workers) as pool:
            working = True

            def read_ahead(path: Path) -> Future:
                nonlocal working
                if working:
                    try:
                        return pool.submit(_read, path)
                    except BrokenProcessPool:
                        working = False
                read: Future = Future()
                read.set_result(_read(path))
                return read

            try:
                for path in files:
                    before = len(report.imported)
                    found = self._examine(path, report)
                    if found is None:
                        done(path, before)
                        continue
                    pending.append((path, *found, read_ahead(path)))
                    while len(pending) > 2 * self.workers:
                        self._store_read(pending.popleft(), report, done)
                while pending:
                    self._store_read(pending.popleft(), report, done)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _store_read(self, item: tuple[Path, str, int, Future], report: ImportReport,
                    done: Callable[[Path, int], None]) -> None:
        path, sha, size, future = item
        before = len(report.imported)
        try:
            read = future.result()
        except BrokenProcessPool:
            logger.warning("an import worker stopped; reading %s in the importing process", path)
            read = _read(path)
        except Exception as e:  # the record could not come back from the worker
            logger.exception("reading %s in a worker failed", path)
            read = _unexpected(e)
        self._store(path, sha, size, read, report)
        done(path, before)

    def _update_index(self, how: Callable, report: ImportReport) -> None:
        """``how(db, index)``; when another process keeps the index's writer lock (the server's
        own update, a rebuild), the import goes on: the books are in the catalog and its queue, and
        whichever writer comes next indexes them."""
        try:
            how(self.db, self.index)
        except IndexBusy as e:
            logger.warning("search index busy, the new books will be indexed later: %s", e)
            report.index_busy = True

    def wants_bulk(self, files: int) -> bool:
        """Whether importing ``files`` books should rebuild the index once at the end: when they are
        at least ``BULK_IMPORT_FILES`` and at least as many as the catalog has. Rebuilding also
        reads the books already there (no more than the new ones), and leaves one segment: searches
        look in every segment, and at 10,000 books the 30 an import used to leave made searches three
        times slower and the index five times larger."""
        return files >= max(BULK_IMPORT_FILES, catalog.count_books(self.db))


def _read(path: Path) -> BookRecord | Message:
    """The record of the EPUB at ``path``, or why it cannot be read (in a worker process, too)."""
    try:
        return read_epub(path)
    except EpubUnreadable as e:
        return e.message
    except Exception as e:  # a parser bug must not stop the batch either
        logger.exception("unexpected error reading %s", path)
        return _unexpected(e)


def _unexpected(e: Exception) -> Message:
    return say(N_("unexpected error while reading: %(detail)s"), detail=f"{type(e).__name__}: {e}")


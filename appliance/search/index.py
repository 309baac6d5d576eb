"""The full-text search index (the only module that imports Whoosh): the analysis and the
schema, ``SearchIndex``'s Whoosh side (opening a generation, its searcher and its writers,
writing a generation in parts) and the reading of segment postings.

The index is derived from the catalog: when it is missing or damaged, ``is_usable`` says so,
``search`` raises ``IndexUnavailable`` and a rebuild makes a fresh one. What needs no Whoosh is
``SearchIndex``'s bases: answering searches (``appliance.search.searches``), updates and
compaction (``appliance.search.updates``), rebuilds and their lock (``appliance.search.rebuilds``).
"""
from __future__ import annotations

import logging
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from whoosh import index as whoosh_index
from whoosh.analysis import Token, Tokenizer
from whoosh.codec.whoosh3 import W3LeafMatcher
from whoosh.fields import ID, STORED, TEXT, FieldType, Schema
from whoosh.filedb.filestore import FileStorage
from whoosh.formats import Existence
from whoosh.matching.wrappers import FilterMatcher
from whoosh.query import Term
from whoosh.reading import SegmentReader, TermNotFound
from whoosh.writing import LockError, PostingPool, SegmentWriter

from appliance.lru import SizedLRU
from appliance.search import rebuilds
from appliance.search.documents import BOOST_FIELDS, SEP, IndexDoc, index_documents
from appliance.search.errors import IndexBusy, IndexUnavailable
from appliance.search.generations import fsync_file, fsync_tree
from appliance.search.hits import ChapterLoader
from appliance.search.postings import EMPTY_IDS, EMPTY_WEIGHTS, ReaderTables, posting_list
from appliance.search.searches import SearchingFolder
from appliance.search.updates import MAX_SEGMENTS, UpdatingFolder, small_ones
from appliance.search.wordpairs import pair_term
from appliance.storage.atomic import atomic_write_text, fsync_dir
from appliance.textfold import WORD, fold, iter_folded_tokens
from appliance.workerpool import process_pool

logger = logging.getLogger(__name__)

__all__ = ["SearchIndex"]

# Bumped when the schema or the analysis changes; an index of another format is rebuilt.
FORMAT = "6"
FORMAT_FILE = "FORMAT"

GAP = 100  # position gap at a separator

STORED_CACHE_BYTES = 2 * 1024 * 1024  # of books' stored fields (description, chapter marks) kept read
WRITER_MB = 32  # Whoosh writer memory before it spills to disk
REBUILD_WRITER_MB = 64
RUN_CHUNK = 4096  # postings per pickle in the writer's sorted runs (``ChunkedPostingPool``)


# ---------------------------------------------------------------------------------------------------
# Analysis


class FoldTokenizer(Tokenizer):
    """Folds the whole value (see appliance.textfold) and yields its words with positions.

    The separator ``SEP`` between values of a field adds a gap of ``GAP`` positions,
    so a phrase never spans two authors or two chapters.
    """

    def __call__(self, value, positions=False, chars=False, keeporiginal=False, removestops=True,
                 start_pos=0, start_char=0, tokenize=True, mode="", **kwargs) -> Iterator[Token]:
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            t.original = t.text = fold(value)
            t.boost = 1.0
            if positions:
                t.pos = start_pos
            if chars:
                t.startchar, t.endchar = start_char, start_char + len(value)
            yield t
            return
        pos = start_pos
        for part in value.split(SEP):
            folded = fold(part)
            for m in WORD.finditer(folded):
                word = m.group()
                if word.strip("_") == "":
                    continue
                t.text = word[:64]
                t.boost = 1.0
                t.stopped = False
                if keeporiginal:
                    t.original = t.text
                if positions:
                    t.pos = pos
                if chars:
                    t.startchar, t.endchar = start_char + m.start(), start_char + m.end()
                pos += 1
                yield t
            pos += GAP


class PairTokenizer(Tokenizer):
    """Each two neighbouring folded words as one term (see ``pair_term``), for quoted phrases.

    A phrase of n words matches a book that has its n-1 word pairs: no positions are stored or
    read, which keeps phrase search fast on whole books. Pairs never span a ``SEP``.
    """

    def __call__(self, value, positions=False, chars=False, keeporiginal=False, removestops=True,
                 start_pos=0, start_char=0, tokenize=True, mode="", **kwargs) -> Iterator[Token]:
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        if not tokenize:
            t.original = t.text = value
            t.boost = 1.0
            yield t
            return
        for part in value.split(SEP):
            previous = None
            for word in iter_folded_tokens(fold(part)):
                if previous is not None:
                    t.text = pair_term(previous, word)
                    t.boost = 1.0
                    t.stopped = False
                    yield t
                previous = word


class ValuesTokenizer(Tokenizer):
    """Each ``SEP``-separated value, unchanged, is one term (exact subject and language filters)."""

    def __call__(self, value, positions=False, chars=False, keeporiginal=False, removestops=True,
                 start_pos=0, start_char=0, tokenize=True, mode="", **kwargs) -> Iterator[Token]:
        t = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        for n, part in enumerate(value.split(SEP) if tokenize else [value]):
            if not part:
                continue
            t.text = part
            t.boost = 1.0
            t.stopped = False
            if positions:
                t.pos = start_pos + n
            yield t


def _text(stored: bool = False, phrase: bool = True) -> TEXT:
    return TEXT(analyzer=FoldTokenizer(), phrase=phrase, stored=stored)


def make_schema() -> Schema:
    return Schema(
        kind=ID(),  # "b" book, "c" chapter
        book_id=ID(stored=True, sortable=True),
        title=_text(),
        authors=_text(),
        subject_words=_text(),
        all=_text(phrase=False),  # no positions: phrases go through ``pairs``
        # Lengths are kept though never scored: without a length column Whoosh's writer looks for
        # the column's file once per posting, a sixth of the indexing time.
        pairs=FieldType(format=Existence(), analyzer=PairTokenizer(), scorable=True),
        language=ID(),
        subjects=FieldType(format=Existence(), analyzer=ValuesTokenizer(), scorable=False),
        blurb=STORED(),  # capped description, for the snippet of a title/author match
        marks=STORED(),  # which chapters may hold a word (appliance.search.chaptermarks)
    )


# ---------------------------------------------------------------------------------------------------
# The index


class SearchIndex(SearchingFolder, UpdatingFolder):
    """Full-text search over the catalog's books.

    One object per process is meant to be shared by threads: searches reuse one
    searcher (refreshed when another process or a commit changed the index) and
    run one at a time, writes are serialized, and other processes writing are
    waited for through Whoosh's file lock.

    ``chapter_loader(book_id, positions, head=None)`` yields a book's chapters as (position,
    title, text, complete), in order: those at ``positions``, or all when it is None, their text
    cut after about ``head`` bytes when given (``complete`` false when it was cut); with it, hits
    name the chapter where the words are and show a snippet of it.
    """

    def __init__(self, folder: Path, *, chapter_loader: ChapterLoader | None = None):
        super().__init__(folder, chapter_loader)
        self._searcher = None
        self._searcher_gen: str | None = None
        self._pointer_stamp: tuple[int, int] | None = None
        self._tables: ReaderTables | None = None
        self._tables_key: object = None
        # Document number -> its stored fields, for the searcher in use: reading and unpickling them
        # was a quarter of a first search's snippets.
        self._stored: SizedLRU[dict] = SizedLRU(STORED_CACHE_BYTES)

    # -- generations ------------------------------------------------------------------------------

    def _open(self, gen: str):
        path = self.folder / gen
        if (path / FORMAT_FILE).read_text(encoding="utf-8").strip() != FORMAT:
            raise IndexUnavailable(f"search index {path} has an old format")
        # Plain file reads, not mmap: Whoosh maps every segment whole, which costs resident memory
        # in proportion to the index (hundreds of MB at 10,000 books) on a 1 GB box.
        return FileStorage(str(path), supports_mmap=False).open_index(schema=make_schema())

    # -- reading ----------------------------------------------------------------------------------

    def _drop_searcher(self) -> None:
        if self._searcher is not None:
            try:
                self._searcher.close()
            except Exception:  # closing a damaged reader may fail; it is dropped anyway
                logger.debug("closing the searcher failed", exc_info=True)
        self._searcher = None
        self._searcher_gen = None
        self._tables = None
        self._tables_key = None
        self._snippets.clear()
        self._stored.clear()

    def _get_searcher(self):
        """The shared searcher, reopened when the generation changed, refreshed after commits."""
        stamp = self._pointer_key()
        if self._searcher is not None and stamp == self._pointer_stamp:
            if self._searcher.up_to_date():
                return self._searcher
            # A commit happened. (Whoosh's Searcher.refresh() would reuse segment readers
            # and miss deletions made to an existing segment, so open afresh.)
        self._drop_searcher()
        gen = self._current_gen()
        if gen is None:
            raise IndexUnavailable(f"no search index in {self.folder}")
        try:
            ix = self._open(gen)
            searcher = ix.searcher()
        except IndexUnavailable:
            raise
        except Exception as e:
            raise IndexUnavailable(f"cannot open the search index {self.folder / gen}: {e!r}") from e
        self._searcher, self._searcher_gen, self._pointer_stamp = searcher, gen, stamp
        return searcher

    def _tables_for(self, searcher) -> ReaderTables:
        key = (self._searcher_gen, searcher.reader().generation(), id(searcher))
        if self._tables is None or self._tables_key != key:
            self._tables = _tables(searcher.reader())
            self._tables_key = key
        return self._tables

    def is_usable(self) -> bool:
        """True when the index exists, opens and reads back without error."""
        gen = self._current_gen()
        if gen is None:
            return False
        try:
            ix = self._open(gen)
            with ix.searcher() as s:
                reader = s.reader()
                total = reader.doc_count_all()
                for name in ("kind", "book_id", "language", "title", "all"):
                    for n, _term in enumerate(reader.lexicon(name)):
                        if n >= 2:
                            break
                for kind in ("b",):
                    for n, docnum in enumerate(s.docs_for_query(Term("kind", kind))):
                        s.stored_fields(docnum)
                        if n >= 2:
                            break
                if total:
                    s.stored_fields(total - 1)
                _tables(reader)
            return True
        except Exception as e:
            logger.warning("search index in %s is not usable: %r", self.folder / gen, e)
            return False

    def _stored_fields(self, searcher, docnum: int) -> dict:
        stored = self._stored.get(docnum)
        if stored is None:
            stored = searcher.stored_fields(docnum)
            size = len(stored.get("blurb") or "") + sum(len(bits) + 64 for _, bits in stored.get("marks") or ())
            self._stored.put(docnum, stored, size)
        return stored

    # -- writing ----------------------------------------------------------------------------------

    def _writer(self, ix):
        try:
            return _chunked(ix.writer(timeout=rebuilds.WRITE_TIMEOUT, delay=0.25, limitmb=WRITER_MB), WRITER_MB)
        except LockError as e:
            raise IndexBusy(f"the search index in {self.folder} stayed locked by another writer") from e

    def _create_generation(self) -> tuple[str, object]:
        """A new empty index folder (not yet current)."""
        numbers = [int(p.name[4:]) for p in self._generation_dirs()]
        gen = f"gen-{max(numbers, default=0) + 1:06d}"
        path = self.folder / gen
        path.mkdir(parents=True)
        atomic_write_text(path / FORMAT_FILE, FORMAT + "\n")
        ix = whoosh_index.create_in(str(path), make_schema())
        fsync_tree(path)
        return gen, ix

    def _new_generation(self) -> str:
        gen, ix = self._create_generation()
        ix.close()
        return gen

    def _locked_writer(self, gen: str):
        """A writer on the current generation; if a rebuild switched generations while we
        waited for the lock, the writer is taken on the new one instead."""
        for _ in range(5):
            try:
                ix = self._open(gen)
            except IndexUnavailable:
                raise
            except Exception as e:
                raise IndexUnavailable(f"cannot open the search index {self.folder / gen}: {e!r}") from e
            writer = self._writer(ix)
            now = self._current_gen()
            if now == gen:
                return writer
            writer.cancel()
            if now is None:
                raise IndexUnavailable(f"the search index in {self.folder} disappeared")
            gen = now
        raise IndexBusy(f"the search index in {self.folder} keeps changing generation")

    def _apply(self, writer, changes: Iterable[IndexDoc | int]) -> int:
        count = 0
        for change in changes:
            if isinstance(change, IndexDoc):
                writer.delete_by_term("book_id", str(int(change.book_id)))
                for d in index_documents(change):
                    writer.add_document(**d)
            else:
                writer.delete_by_term("book_id", str(int(change)))
            count += 1
        return count

    def _cancel(self, writer) -> None:
        writer.cancel()

    def _commit(self, writer, path: Path, drop_empty: bool = False) -> None:
        before = set(os.listdir(path))
        # Merging runs every posting of the merged segments through Whoosh's external sort again:
        # at thousands of books that is most of an import's time and gigabytes of temporary runs.
        # Segments are merged only once there are many (search reads each segment's postings).
        merge = len(getattr(writer, "segments", ())) >= MAX_SEGMENTS
        writer.commit(merge=merge, mergetype=_holding_books if drop_empty else None)
        for name in set(os.listdir(path)) - before:
            fsync_file(path / name)
        fsync_dir(path)

    def _segment_sizes(self, writer) -> list[int]:
        return [segment.doc_count() for segment in writer.segments]

    def _book_ids_in(self, writer, segments: list[int]) -> set[int]:
        ids = set()
        for n in segments:
            reader = SegmentReader(writer.storage, writer.schema, writer.segments[n])
            try:
                column = reader.column_reader("book_id")
                ids.update(int(column[docnum]) for docnum in reader.all_doc_ids())
            finally:
                reader.close()
        return ids

    def _release_readers(self) -> None:
        self.close()

    def segment_count(self) -> int:
        """Segments of the live index (a search looks its words up in each)."""
        gen = self._current_gen()
        return len(self._open(gen)._segments()) if gen is not None else 0

    def small_segments(self) -> int:
        """How many segments ``compact`` would take now (if there are enough of them)."""
        gen = self._current_gen()
        return len(small_ones([s.doc_count() for s in self._open(gen)._segments()])) if gen is not None else 0

    def _write_generation(self, docs: Iterable[IndexDoc],
                          parts: Sequence[Callable[[], Iterable[IndexDoc]]]) -> tuple[str, int]:
        gen, ix = self._create_generation()
        try:
            if parts:
                count = _write_parts(ix, self.folder / gen, parts)
            else:
                count = _write_docs(ix, docs)
        except BaseException:
            ix.close()
            shutil.rmtree(self.folder / gen, ignore_errors=True)
            raise
        ix.close()
        return gen, count

    def _switch_over(self, old: str | None, gen: str) -> None:
        """Make ``gen`` current once no other process is writing to ``old``, then delete ``old``."""
        old_lock = None
        if old is not None and (self.folder / old).is_dir():
            try:
                old_ix = self._open(old)
                old_lock = old_ix.lock("WRITELOCK")
                deadline = time.monotonic() + rebuilds.WRITE_TIMEOUT
                while not old_lock.acquire(False):
                    if time.monotonic() >= deadline:
                        old_lock = None  # a stuck writer on a doomed generation: switch anyway
                        break
                    time.sleep(0.1)
            except Exception:
                old_lock = None  # the old generation is damaged; nobody can be writing to it usefully
        try:
            self._switch_to(gen)
        finally:
            if old_lock is not None:
                old_lock.release()
        with self._search_lock:
            self._drop_searcher()
        if old is not None and old != gen:
            shutil.rmtree(self.folder / old, ignore_errors=True)


def _add_books(writer, docs: Iterable[IndexDoc]) -> int:
    """Give each book of ``docs`` to ``writer``; returns how many."""
    count = 0
    for doc in docs:
        for d in index_documents(doc):
            writer.add_document(**d)
        count += 1
    return count


def _write_docs(ix, docs: Iterable[IndexDoc]) -> int:
    """Index ``docs`` into ``ix`` (a new generation) with one writer and one commit."""
    writer = _chunked(ix.writer(limitmb=REBUILD_WRITER_MB), REBUILD_WRITER_MB)
    try:
        count = _add_books(writer, docs)
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
    return count


def _write_parts(ix, path: Path, parts: Sequence[Callable[[], Iterable[IndexDoc]]]) -> int:
    """Index each part into a segment of its own in a process of its own, then commit the
    segments, in the parts' order, as the generation's contents (no merge).

    The writer taken here holds the generation's lock and makes the folder for temporary files
    the part writers share (each names its own files); its own segment stays empty."""
    writer = ix.writer()
    try:
        with process_pool(len(parts)) as pool:  # on leaving, waits for every part (one per worker)
            futures = [pool.submit(_write_part, str(path), part) for part in parts]
            results = [f.result() for f in futures]
    except BaseException:
        writer.cancel()
        raise
    for n, (_, count, seconds) in enumerate(results):
        logger.info("search index part %d: %d books in %.1f s", n + 1, count, seconds)
    writer._close_segment()
    writer._commit_toc([segment for segment, _, _ in results if segment is not None])
    writer._finish()
    return sum(count for _, count, _ in results)


def _write_part(path: str, part: Callable[[], Iterable[IndexDoc]]) -> tuple[object | None, int, float]:
    """In a rebuild's worker process: index the books ``part()`` gives into a new segment of the
    index at ``path`` (whose lock the parent holds); return the segment, unlisted, the count and
    the seconds it took."""
    started = time.monotonic()
    ix = whoosh_index.open_dir(path)
    writer = _chunked(SegmentWriter(ix, _lk=False, limitmb=REBUILD_WRITER_MB), REBUILD_WRITER_MB)
    try:
        count = _add_books(writer, part())
        if not count:
            writer._close_segment()
            return None, 0, time.monotonic() - started
        return writer._finalize_segment(), count, time.monotonic() - started
    except BaseException:
        writer._close_segment()
        raise


class ChunkedPostingPool(PostingPool):
    """Whoosh's posting pool with its sorted runs (written when the postings outgrow the writer's
    memory) pickled ``RUN_CHUNK`` postings at a time instead of one by one (a pickle call per
    posting each way: a 300-book rebuild took 56 s, now 47 s). The runs are this process's own
    temporary files, read back once and deleted."""

    def _write_run(self, f, items):
        chunk = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= RUN_CHUNK:
                pickle.dump(chunk, f, pickle.HIGHEST_PROTOCOL)
                chunk = []
        if chunk:
            pickle.dump(chunk, f, pickle.HIGHEST_PROTOCOL)
        f.close()

    def _read_run(self, path):
        f = self._open_run(path)
        try:
            while True:
                try:
                    chunk = pickle.load(f)
                except EOFError:
                    return
                yield from chunk
        finally:
            f.close()
            self._remove_run(path)


class _KeptLengths:
    """A segment's per-document reader whose field lengths are read once per document.

    Writing a segment's postings asks for the length of the posting's document in its field,
    posting by posting; Whoosh reads it from the length column each time (a seventh of a
    rebuild's time). Here each field's lengths are read once into a list."""

    def __init__(self, reader):
        self._reader = reader
        self._lengths: dict[str, list[int]] = {}

    def doc_field_length(self, docnum: int, fieldname: str, default: int = 0) -> int:
        lengths = self._lengths.get(fieldname)
        if lengths is None:
            ask = self._reader.doc_field_length
            lengths = self._lengths[fieldname] = [ask(n, fieldname, 0) for n in range(self._reader.doc_count_all())]
        return lengths[docnum] or default

    def __getattr__(self, name: str):
        return getattr(self._reader, name)


def _holding_books(writer, segments) -> list:
    """Of ``segments``, those still holding books: a commit's merge type that leaves out the others."""
    return [seg for seg in segments if seg.doc_count() > 0]


def _chunked(writer, limitmb: int):
    """``writer`` with a ``ChunkedPostingPool`` in place of its (still empty) pool, and field
    lengths read once per document when it writes its segment (``_KeptLengths``)."""
    pool = getattr(writer, "pool", None)
    if type(pool) is PostingPool and not pool.current and not pool.runs:
        writer.pool = ChunkedPostingPool(pool.tempstore, pool.segment, limitmb=limitmb)
    if isinstance(writer, SegmentWriter):
        reader_of = writer.per_document_reader
        writer.per_document_reader = lambda: _KeptLengths(reader_of())
    return writer


def _leaf_postings(leaf, field: str, term: str) -> tuple[np.ndarray, np.ndarray]:
    """(document numbers, weights) of ``term`` in ``field`` of one segment, deleted ones included."""
    try:
        matcher = leaf.postings(field, term)
    except TermNotFound:
        return EMPTY_IDS, EMPTY_WEIGHTS
    if isinstance(matcher, FilterMatcher):  # hides deleted documents; ReaderTables masks them
        matcher = matcher.child
    if isinstance(matcher, W3LeafMatcher):
        return _w3_postings(matcher)
    ids: list = []
    weights: list = []
    while matcher.is_active():  # postings kept inline in the term table (a handful of documents)
        ids.append(matcher.id())
        weights.append(matcher.weight())
        matcher.next()
    if not ids:
        return EMPTY_IDS, EMPTY_WEIGHTS
    return np.asarray(ids, dtype=np.int32), np.asarray(weights, dtype=np.float32)


def _w3_postings(matcher: W3LeafMatcher) -> tuple[np.ndarray, np.ndarray]:
    """A posting list of Whoosh's segment format read whole, in one read of the segment file.

    Whoosh's own matcher reads each block's header through its file layers a few bytes at a time
    (most of a search's time at 50,000 books, where a common word has hundreds of blocks). The
    list is decoded by ``posting_list``.
    """
    size = matcher._length[0] if isinstance(matcher._length, tuple) else matcher._length
    return posting_list(matcher._postfile.get(matcher._startoffset, size))


def _tables(reader) -> ReaderTables:
    return ReaderTables(reader, read_leaf=_leaf_postings, value_fields=("language", "subjects"),
                        scored_fields=("all", *(name for name, _ in BOOST_FIELDS)), book_field="book_id")

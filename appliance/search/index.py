"""The full-text search index (the only module that imports Whoosh).

Layout of the index folder (``LIBRARY_HOME/index``)::

    CURRENT              name of the live generation, replaced atomically
    rebuild.lock         held (flock) while a rebuild runs
    gen-000007/          a Whoosh index

``rebuild`` writes a new generation folder, flushes it to disk, then replaces
``CURRENT``; the old folder is deleted afterwards. A power cut at any moment
leaves ``CURRENT`` naming a complete index. The index is derived from the
catalog: when it is missing or damaged, ``is_usable`` says so, ``search`` raises
``IndexUnavailable`` and a rebuild makes a fresh one.

Documents. Each book gives one document (title, authors, subjects, description
and the text of all its chapters together in ``all``), so ranking, the total and
the facet counts are per book, and words may come from different chapters. The
chapter where the words are, and a snippet of it, are found for the books on the
asked page only, in the chapter texts the catalog keeps (``chapter_loader``): the
index holds no second copy of the text.

Queries. Words are folded like the text (``appliance.textfold``); every word
must match (in any field) unless the query finds nothing that way, in which
case books matching any of the words are shown instead (``SearchPage.relaxed``
is then True). ``"..."`` is a phrase: a book matches when it has each pair of neighbouring
words of it (``pair_term`` says how rarely that is wrong); ``-word`` leaves out books with that word.
Nothing else in a query is syntax, so no input can make the search fail.
Every word is looked for in one combined field (title, authors, subjects,
description and text); matches in the title, authors and subjects then add to
the score, so they rank above matches in the text only. Matching, counting and
ranking run on arrays of postings (``appliance.search.postings``), not on Whoosh's
matchers.
"""
from __future__ import annotations

import html
import io
import itertools
import logging
import os
import pickle
import shutil
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
from appliance.search.chaptermarks import chapters_with_all, chapters_with_any, marks_of_words
from appliance.search.documents import BOOST_FIELDS, IndexDoc
from appliance.search.errors import IndexBusy, IndexUnavailable
from appliance.search.generations import IndexFolder
from appliance.search.postings import EMPTY_IDS, EMPTY_WEIGHTS, ReaderTables
from appliance.search.query import ParsedQuery, parse_query
from appliance.search.snippets import SNIPPET_CHARS, _locator, make_snippet
from appliance.storage.atomic import atomic_write_text, fsync_dir
from appliance.storage.locks import FileLock
from appliance.textfold import WORD, clean, fold, iter_folded_tokens
from appliance.workerpool import process_pool

logger = logging.getLogger(__name__)

__all__ = ["Hit", "SearchPage", "SearchIndex"]

# Bumped when the schema or the analysis changes; an index of another format is rebuilt.
FORMAT = "6"
FORMAT_FILE = "FORMAT"
REBUILD_LOCK = "rebuild.lock"

SEP = "\x1f"  # between values of one field (authors, subjects, chapters): phrases do not cross it
GAP = 100  # position gap at a separator

MAX_SNIPPET_CHAPTERS = 40  # chapters of one book read to find the words, at most
NAMED_SNIPPET_CHAPTERS = 3  # the same for a book whose title, authors or subjects hold the words
SNIPPET_BATCH = 4  # chapters the marks point to, read from the catalog in one query

MAX_PAGELEN = 100
# Of a chapter's text, decompressed for a snippet: first SNIPPET_FIRST_BYTES (most words are
# found there), then SNIPPET_HEAD_BYTES (enough for PHRASE_SCAN_CHARS of any script but CJK), then
# the whole chapter, each only when what was read cannot decide.
SNIPPET_FIRST_BYTES = 16 * 1024
SNIPPET_HEAD_BYTES = 96 * 1024
SNIPPET_CACHE_BYTES = 512 * 1024  # of snippets kept for books shown again for the same words
SNIPPET_KEY_BYTES = 400  # about what a snippet's key and entry take besides its text
STORED_CACHE_BYTES = 2 * 1024 * 1024  # of books' stored fields (description, chapter marks) kept read
DESCRIPTION_CHARS = 2_000
WRITE_TIMEOUT = 120.0  # seconds to wait for another writer before giving up
WRITER_MB = 32  # Whoosh writer memory before it spills to disk
MAX_SEGMENTS = 32  # an index update merges segments only when there are this many
# ``compact`` indexes the books of the small segments (under half the books of the largest) again
# once there are this many, the smallest first and at most COMPACT_MAX_BOOKS books at a time (a few
# minutes of a Pi's core; larger segments wait for the merge at MAX_SEGMENTS or a reindex).
COMPACT_SMALL_SEGMENTS = 4
COMPACT_MAX_BOOKS = 2_000
REBUILD_WRITER_MB = 64
RUN_CHUNK = 4096  # postings per pickle in the writer's sorted runs (``ChunkedPostingPool``)


@dataclass(frozen=True)
class Hit:
    book_id: int
    score: float
    chapter_position: int | None  # where body words were found; None when only title/author/description matched
    chapter_title: str | None
    snippet: str  # HTML-escaped, matched words in <mark>...</mark>; "" if none


@dataclass(frozen=True)
class SearchPage:
    query: str
    total: int
    page: int
    pagelen: int
    hits: tuple[Hit, ...]
    languages: dict[str, int]  # facet counts over all matching books, before the filters
    subjects: dict[str, int]
    relaxed: bool = False  # True when no book had every word and books with some of them are shown


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


PAIR_BUCKETS = 1 << 22


def pair_term(first: str, second: str) -> str:
    """The ``pairs`` term of two neighbouring folded words: one of ``PAIR_BUCKETS`` buckets.

    Hashing bounds the term table (a 10,000-book catalog has tens of millions of distinct word
    pairs); the price is a rare false match, which needs a book that has every word of the phrase,
    and, for each pair, another pair of its own that falls in the same bucket.
    """
    return format(zlib.crc32(f"{first} {second}".encode()) % PAIR_BUCKETS, "x")


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


def pairs_of(toks: tuple[str, ...]) -> list[str]:
    return [pair_term(a, b) for a, b in zip(toks, toks[1:], strict=False)]


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
# Queries


def _clause_mask(tables: ReaderTables, toks: tuple[str, ...]) -> np.ndarray:
    """Books having a word in the combined field, or a phrase's every word and every word pair
    (the words too: a pair is a hashed bucket, which a book without them may fill)."""
    words = tables.all_of("all", sorted(set(toks)))
    if len(toks) == 1:
        return words
    return words & tables.all_of("pairs", pairs_of(toks))


def _matching(tables: ReaderTables, parsed: ParsedQuery, any_word: bool = False) -> np.ndarray:
    """The books matching ``parsed`` (every clause, or any with ``any_word``)."""
    masks = [_clause_mask(tables, toks) for toks in parsed.required]
    out = masks[0]
    for m in masks[1:]:
        out = (out | m) if any_word else (out & m)
    for toks in parsed.excluded:
        out &= ~_clause_mask(tables, toks)
    return out


def _scores(tables: ReaderTables, parsed: ParsedQuery) -> tuple[np.ndarray, np.ndarray]:
    """Every book's score (its words in the text, plus more for clauses in the title, authors
    and subjects), and which books are named: their title, authors or subjects hold every
    required clause (all its words)."""
    scores = np.zeros(tables.size, dtype=np.float32)
    for word in sorted(parsed.words()):
        ids, s = tables.bm25("all", word)
        scores[ids] += s
    named = np.ones(tables.size, dtype=bool)
    for toks in parsed.required:
        in_some_field = np.zeros(tables.size, dtype=bool)
        for name, boost in BOOST_FIELDS:
            field_scores, present = tables.field_score(name, toks)
            scores += boost * field_scores
            in_some_field |= present
        named &= in_some_field
    return scores, named


# ---------------------------------------------------------------------------------------------------
# The index


class SearchIndex(IndexFolder):
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

    def __init__(self, folder: Path, *,
                 chapter_loader: Callable[..., Iterable[tuple[int, str, str, bool]]] | None = None):
        super().__init__(folder)
        self.chapter_loader = chapter_loader
        self._search_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._rebuild_lock_held = False  # this object holds the rebuild lock (see _no_other_rebuild)
        self._searcher = None
        self._searcher_gen: str | None = None
        self._pointer_stamp: tuple[int, int] | None = None
        self._tables: ReaderTables | None = None
        self._tables_key: object = None
        # (book id, words, phrases, named) -> the hit's chapter position and title (or None) and snippet;
        # emptied whenever the index changes, since a change may be a new version of a book.
        self._snippets: SizedLRU[tuple[int | None, str | None, str]] = SizedLRU(SNIPPET_CACHE_BYTES)
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

    def search(self, q: str, *, language: str | None = None, subject: str | None = None, page: int = 1,
               pagelen: int = 20) -> SearchPage:
        """One page of books matching ``q``; raises IndexUnavailable if the index cannot be read."""
        page = max(1, _as_int(page, 1))
        pagelen = min(MAX_PAGELEN, max(1, _as_int(pagelen, 20)))
        query = clean(str(q or ""))
        parsed = parse_query(query)
        if not parsed.required:
            return SearchPage(query, 0, page, pagelen, (), {}, {})
        with self._search_lock:
            for attempt in (1, 2):
                searcher = self._get_searcher()
                try:
                    return self._search(searcher, query, parsed, language, subject, page, pagelen)
                except Exception as e:
                    self._drop_searcher()
                    if attempt == 2:
                        logger.exception("search index in %s failed to answer", self.folder)
                        raise IndexUnavailable(f"the search index failed: {e!r}") from e
                    logger.warning("search failed (%r); reopening the index", e)
        raise AssertionError("unreachable")

    def _search(self, searcher, query: str, parsed: ParsedQuery, language: str | None, subject: str | None,
                page: int, pagelen: int) -> SearchPage:
        tables = self._tables_for(searcher)
        relaxed = False
        matches = _matching(tables, parsed)
        if not matches.any() and len(parsed.required) > 1:
            matches = _matching(tables, parsed, any_word=True)
            relaxed = bool(matches.any())
        languages = tables.language_counts(matches)
        subjects = tables.subject_counts(matches)
        allowed = matches
        if language is not None:
            allowed = allowed & tables.with_language(language)
        if subject is not None:
            allowed = allowed & tables.with_subject(subject)
        total = int(np.count_nonzero(allowed))
        hits: tuple[Hit, ...] = ()
        first = (page - 1) * pagelen
        if first < total:
            scores, named = _scores(tables, parsed)
            top = tables.top(scores, allowed, first + pagelen)[first:]
            hits = self._hits(searcher, tables, parsed, top, named)
        return SearchPage(query, total, page, pagelen, hits, languages, subjects, relaxed)

    def _hits(self, searcher, tables: ReaderTables, parsed: ParsedQuery, top: list[tuple[int, float]],
              named: np.ndarray) -> tuple[Hit, ...]:
        words = frozenset(parsed.words())
        phrases = tuple(clause for clause in parsed.required if len(clause) > 1)
        out = []
        for docnum, score in top:
            book_id = int(tables.book_id[docnum])
            position, title, snippet = self._cached_snippet(searcher, docnum, book_id, words, phrases,
                                                            bool(named[docnum]))
            out.append(Hit(book_id, float(score), position, title, snippet))
        return tuple(out)

    def _cached_snippet(self, searcher, docnum: int, book_id: int, words: frozenset[str],
                        phrases: tuple[tuple[str, ...], ...], named: bool) -> tuple[int | None, str | None, str]:
        key = (book_id, words, phrases, named)
        found = self._snippets.get(key)
        if found is None:
            found = self._snippet(searcher, docnum, book_id, words, phrases, named)
            self._snippets.put(key, found, sys.getsizeof(found[2]) + SNIPPET_KEY_BYTES)
        return found

    def _snippet(self, searcher, docnum: int, book_id: int, words: frozenset[str],
                 phrases: tuple[tuple[str, ...], ...], named: bool) -> tuple[int | None, str | None, str]:
        """(chapter position, chapter title, snippet) of a hit. A book whose title, authors or
        subjects hold every clause (``named``) shows its description when the words are in it;
        other books, and those with a description without the words, show the first chapter
        with the words (a named book's words may be nowhere in its text: only its first
        chapters are read), else the description. For a quoted phrase, chapters that may hold
        all of its words come first."""
        stored = self._stored_fields(searcher, docnum)
        blurb = stored.get("blurb") or ""
        described = make_snippet(blurb, words) if named else ""
        if described:
            return None, None, described
        marks = stored.get("marks")
        chapters = NAMED_SNIPPET_CHAPTERS if named else MAX_SNIPPET_CHAPTERS
        found = None
        if marks is None:
            found = self._chapter_hit(book_id, words, chapters, None, phrases)
        else:
            holding = list(itertools.islice(chapters_with_all(marks, phrases[0]), chapters)) if phrases else []
            if holding:
                found = self._chapter_hit(book_id, words, chapters, holding, phrases)
            if found is None:
                found = self._chapter_hit(book_id, words, chapters,
                                          (p for p in chapters_with_any(marks, words) if p not in holding), phrases)
        if found is None:
            return None, None, described if named else make_snippet(blurb, words)
        return found

    def _stored_fields(self, searcher, docnum: int) -> dict:
        stored = self._stored.get(docnum)
        if stored is None:
            stored = searcher.stored_fields(docnum)
            size = len(stored.get("blurb") or "") + sum(len(bits) + 64 for _, bits in stored.get("marks") or ())
            self._stored.put(docnum, stored, size)
        return stored

    def _chapter_hit(self, book_id: int, words: frozenset[str], chapters: int, positions: Iterable[int] | None,
                     phrases: tuple[tuple[str, ...], ...] = ()) -> tuple[int, str, str] | None:
        """(position, title, snippet) of the first chapter where the words are, read from the
        catalog: of the first ``chapters`` at ``positions`` (those the marks say may hold them, taken
        SNIPPET_BATCH at a time as they are found), or of the first ``chapters`` when there are no marks."""
        if self.chapter_loader is None:
            return None
        try:
            for position, title, text, complete in self._chapters_read(book_id, chapters, positions):
                snippet = make_snippet(text or "", words, phrases=phrases, complete=complete)
                for head in (SNIPPET_HEAD_BYTES, None):  # more of the chapter while what was read cannot decide
                    if snippet is not None:
                        break
                    for _, _, text, complete in self.chapter_loader(book_id, [position], head):
                        snippet = make_snippet(text or "", words, phrases=phrases, complete=complete)
                if snippet:
                    return int(position), title or "", snippet
                if title and _locator(words).search(fold(title)):
                    opening = " ".join((text or "")[:SNIPPET_CHARS].split())
                    return int(position), title, html.escape(opening, quote=False)
        except Exception:
            logger.warning("could not read the chapters of book %s for a snippet", book_id, exc_info=True)
        return None

    def _chapters_read(self, book_id: int, chapters: int, positions: Iterable[int] | None):
        if positions is None:
            yield from itertools.islice(self.chapter_loader(book_id, None, SNIPPET_FIRST_BYTES), chapters)
            return
        wanted = itertools.islice(positions, chapters)
        while batch := list(itertools.islice(wanted, SNIPPET_BATCH)):
            yield from self.chapter_loader(book_id, batch, SNIPPET_FIRST_BYTES)

    def book_ids(self) -> set[int]:
        """Ids of the books in the index (empty when there is no usable index)."""
        with self._search_lock:
            try:
                searcher = self._get_searcher()
                tables = self._tables_for(searcher)
                return {int(b) for b in tables.book_id[tables.live]}
            except IndexUnavailable:
                return set()
            except Exception:
                logger.warning("could not list the books of the search index", exc_info=True)
                self._drop_searcher()
                return set()

    # -- writing ----------------------------------------------------------------------------------

    def _writer(self, ix, limitmb: int):
        try:
            return _chunked(ix.writer(timeout=WRITE_TIMEOUT, delay=0.25, limitmb=limitmb), limitmb)
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
        _fsync_tree(path)
        return gen, ix

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
            writer = self._locked_writer(gen, WRITER_MB)
            try:
                count = _apply(writer, itertools.chain([first], changes))
            except BaseException:
                writer.cancel()
                raise
            self._commit(writer, self.folder / gen)
        return count

    def _start_empty(self) -> str:
        """Make the first, empty generation when the folder has no index at all."""
        with self._no_other_rebuild(WRITE_TIMEOUT, "is being rebuilt"):
            gen = self._current_gen()
            if gen is None:
                gen, ix = self._create_generation()
                ix.close()
                self._switch_to(gen)
            return gen

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

    def _locked_writer(self, gen: str, limitmb: int):
        """A writer on the current generation; if a rebuild switched generations while we
        waited for the lock, the writer is taken on the new one instead."""
        for _ in range(5):
            try:
                ix = self._open(gen)
            except IndexUnavailable:
                raise
            except Exception as e:
                raise IndexUnavailable(f"cannot open the search index {self.folder / gen}: {e!r}") from e
            writer = self._writer(ix, limitmb)
            now = self._current_gen()
            if now == gen:
                return writer
            writer.cancel()
            if now is None:
                raise IndexUnavailable(f"the search index in {self.folder} disappeared")
            gen = now
        raise IndexBusy(f"the search index in {self.folder} keeps changing generation")

    def segment_count(self) -> int:
        """Segments of the live index (a search looks its words up in each)."""
        gen = self._current_gen()
        return len(self._open(gen)._segments()) if gen is not None else 0

    def small_segments(self) -> int:
        """How many segments ``compact`` would take now (if there are enough of them)."""
        gen = self._current_gen()
        return len(_small(self._open(gen)._segments())) if gen is not None else 0

    def compact(self, changes_for: Callable[[list[int]], Iterable[IndexDoc | int]]) -> int:
        """Once there are ``COMPACT_SMALL_SEGMENTS`` small segments (see ``_small``), index their
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
            writer = self._locked_writer(gen, WRITER_MB)
            try:
                small = _small(writer.segments)
                if len(small) < COMPACT_SMALL_SEGMENTS:
                    writer.cancel()
                    return 0
                ids = sorted(_book_ids_in(writer, small))
                _apply(writer, changes_for(ids))
            except BaseException:
                writer.cancel()
                raise
            # Their books deleted, the small segments hold nothing: the commit leaves them out.
            self._commit(writer, self.folder / gen,
                         lambda writer, segments: [seg for seg in segments if seg.doc_count() > 0])
        with self._search_lock:
            self._drop_searcher()  # frees the dropped segments' files now
        logger.info("indexed the %d books of %d small segments of the search index again", len(ids), len(small))
        return len(small)

    def _commit(self, writer, path: Path, mergetype=None) -> None:
        before = set(os.listdir(path))
        # Merging runs every posting of the merged segments through Whoosh's external sort again:
        # at thousands of books that is most of an import's time and gigabytes of temporary runs.
        # Segments are merged only once there are many (search reads each segment's postings).
        merge = len(getattr(writer, "segments", ())) >= MAX_SEGMENTS
        writer.commit(merge=merge, mergetype=mergetype)
        for name in set(os.listdir(path)) - before:
            _fsync_file(path / name)
        fsync_dir(path)

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
            _fsync_tree(self.folder / gen)
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

    def _switch_over(self, old: str | None, gen: str) -> None:
        """Make ``gen`` current once no other process is writing to ``old``, then delete ``old``."""
        old_lock = None
        if old is not None and (self.folder / old).is_dir():
            try:
                old_ix = self._open(old)
                old_lock = old_ix.lock("WRITELOCK")
                deadline = time.monotonic() + WRITE_TIMEOUT
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

    def close(self) -> None:
        """Release the searcher and its files; safe to call more than once."""
        with self._search_lock:
            self._drop_searcher()


def _documents(doc: IndexDoc) -> Iterator[dict]:
    """The index documents of one book (one, today)."""
    book_id = str(int(doc.book_id))
    chapters = tuple(doc.chapters)
    title, description = clean(doc.title), clean(doc.description)
    authors, subjects = [clean(a) for a in doc.authors], [clean(s) for s in doc.subjects]
    parts = [title, *authors, *subjects, description, *(f"{clean(t)}\n{clean(x)}" for _, t, x in chapters)]
    # Each part is folded and cut into words once, for ``all``, ``pairs`` and the chapter marks:
    # Whoosh takes a field's words as a list without running its analyzer. The lists hold what
    # the analyzers would make of the parts joined by SEP (``all`` has no positions, ``pairs`` no
    # counts).
    words = [list(iter_folded_tokens(fold(part))) for part in parts]
    pairs = {(a, b) for part in words for a, b in zip(part, part[1:], strict=False)}
    chapter_words = words[len(parts) - len(chapters):]
    yield dict(
        kind="b", book_id=book_id, title=title, authors=SEP.join(authors),
        subject_words=SEP.join(subjects),
        all=[w for part in words for w in part],
        pairs=[pair_term(a, b) for a, b in pairs],
        language=clean(doc.language or ""), subjects=SEP.join(s for s in subjects if s),
        blurb=description[:DESCRIPTION_CHARS],
        marks=marks_of_words((position, w) for (position, _, _), w in zip(chapters, chapter_words, strict=True)),
    )


def _add_books(writer, docs: Iterable[IndexDoc]) -> int:
    """Give each book of ``docs`` to ``writer``; returns how many."""
    count = 0
    for doc in docs:
        for d in _documents(doc):
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


def _apply(writer, changes: Iterable[IndexDoc | int]) -> int:
    """Write ``changes`` (see ``SearchIndex.update``); returns how many there were."""
    count = 0
    for change in changes:
        if isinstance(change, IndexDoc):
            writer.delete_by_term("book_id", str(int(change.book_id)))
            for d in _documents(change):
                writer.add_document(**d)
        else:
            writer.delete_by_term("book_id", str(int(change)))
        count += 1
    return count


def _small(segments) -> list:
    """Of the segments holding fewer than half the books of the largest (books still in them), the
    smallest, as many as hold at most ``COMPACT_MAX_BOOKS`` books together."""
    largest = max((segment.doc_count() for segment in segments), default=0)
    chosen, books = [], 0
    for segment in sorted((s for s in segments if s.doc_count() * 2 < largest), key=lambda s: s.doc_count()):
        if books + segment.doc_count() > COMPACT_MAX_BOOKS:
            break
        chosen.append(segment)
        books += segment.doc_count()
    return chosen


def _book_ids_in(writer, segments) -> set[int]:
    """The books with documents still in ``segments`` (of ``writer``'s index)."""
    ids = set()
    for segment in segments:
        reader = SegmentReader(writer.storage, writer.schema, segment)
        try:
            column = reader.column_reader("book_id")
            ids.update(int(column[docnum]) for docnum in reader.all_doc_ids())
        finally:
            reader.close()
    return ids


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


_BLOCK_SIZE = struct.Struct("!i")


def _w3_postings(matcher: W3LeafMatcher) -> tuple[np.ndarray, np.ndarray]:
    """A posting list of Whoosh's segment format read whole, in one read of the segment file.

    Whoosh's own matcher reads each block's header through its file layers a few bytes at a time
    (most of a search's time at 50,000 books, where a common word has hundreds of blocks). The
    list (``whoosh.codec.whoosh3``): a 4-byte tag, then blocks of up to 128 postings, each a
    big-endian signed size (negative for the last block), a pickled (count, last id, highest
    weight, compression, shortest, longest) and a pickled (ids, weights, values), zlib-compressed
    when compression is set. A block's ids are gaps, its first one counted from 0; its weights are
    None (each 1), one number for all, or one each.
    """
    size = matcher._length[0] if isinstance(matcher._length, tuple) else matcher._length
    data = matcher._postfile.get(matcher._startoffset, size)
    stream = io.BytesIO(data)
    stream.seek(4)  # the tag, checked by the matcher
    gaps: list[int] = []
    weights: list[float] = []
    last_id = 0
    while True:
        (block_size,) = _BLOCK_SIZE.unpack(stream.read(4))
        end = stream.tell() + abs(block_size)
        count, block_last_id, _, compression, _, _ = pickle.load(stream)
        block = data[stream.tell():end]
        stream.seek(end)
        ids, block_weights, _ = pickle.loads(zlib.decompress(block) if compression else block)
        first = len(gaps)
        gaps.extend(ids)
        gaps[first] -= last_id  # a gap from the previous block's last id, so one sum gives all ids
        last_id = block_last_id
        if block_weights is None or isinstance(block_weights, float):
            weights.extend([1.0 if block_weights is None else block_weights] * count)
        else:
            weights.extend(block_weights)
        if block_size < 0:
            break
    return np.cumsum(np.asarray(gaps, dtype=np.int64)).astype(np.int32), np.asarray(weights, dtype=np.float32)


def _tables(reader) -> ReaderTables:
    return ReaderTables(reader, read_leaf=_leaf_postings, value_fields=("language", "subjects"),
                        scored_fields=("all", *(name for name, _ in BOOST_FIELDS)), book_field="book_id")


def _as_int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for name in os.listdir(path):
        _fsync_file(path / name)
    fsync_dir(path)

"""Answering a search: which books match, their scores, the facet counts and one page of hits.

Words are folded like the text (``appliance.textfold``); every word
must match (in any field) unless the query finds nothing that way, in which
case books matching any of the words are shown instead (``SearchPage.relaxed``
is then True). ``"..."`` is a phrase: a book matches when it has each pair of neighbouring
words of it (``appliance.search.wordpairs.pair_term`` says how rarely that is wrong); ``-word`` leaves out
books with that word.
Nothing else in a query is syntax, so no input can make the search fail.
Every word is looked for in one combined field (title, authors, subjects,
description and text); matches in the title, authors and subjects then add to
the score, so they rank above matches in the text only. Matching, counting and
ranking run on arrays of postings (``appliance.search.postings``), not on Whoosh's
matchers.

The searcher and its postings are ``SearchIndex``'s (``appliance.search.index``).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from appliance.search.documents import BOOST_FIELDS
from appliance.search.errors import IndexUnavailable
from appliance.search.generations import IndexFolder
from appliance.search.hits import ChapterLoader, HitSnippets, SearchPage
from appliance.search.postings import ReaderTables
from appliance.search.query import ParsedQuery, parse_query
from appliance.search.wordpairs import pairs_of
from appliance.textfold import clean

logger = logging.getLogger(__name__)

__all__ = ["SearchingFolder", "book_scores", "books_matching"]

MAX_PAGELEN = 100


class SearchingFolder(IndexFolder):
    """Searches of an index folder, one at a time (``_search_lock``), on the searcher and its
    postings tables that ``_get_searcher`` and ``_tables_for`` give; ``_drop_searcher`` lets them
    go (the index's own, ``SearchIndex``)."""

    def __init__(self, folder: Path, chapter_loader: ChapterLoader | None = None):
        super().__init__(folder)
        self._search_lock = threading.Lock()
        self._snippets = HitSnippets(chapter_loader)

    @property
    def chapter_loader(self) -> ChapterLoader | None:
        return self._snippets.chapter_loader

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
        matches = books_matching(tables, parsed)
        if not matches.any() and len(parsed.required) > 1:
            matches = books_matching(tables, parsed, any_word=True)
            relaxed = bool(matches.any())
        languages = tables.language_counts(matches)
        subjects = tables.subject_counts(matches)
        allowed = matches
        if language is not None:
            allowed = allowed & tables.with_language(language)
        if subject is not None:
            allowed = allowed & tables.with_subject(subject)
        total = int(np.count_nonzero(allowed))
        hits = ()
        first = (page - 1) * pagelen
        if first < total:
            scores, named = book_scores(tables, parsed)
            top = tables.top(scores, allowed, first + pagelen)[first:]
            hits = self._snippets.hits(parsed, top, tables.book_id, named,
                                       lambda docnum: self._stored_fields(searcher, docnum))
        return SearchPage(query, total, page, pagelen, hits, languages, subjects, relaxed)

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

    def close(self) -> None:
        """Release the searcher and its files; safe to call more than once."""
        with self._search_lock:
            self._drop_searcher()

    def _get_searcher(self):
        """The shared searcher (IndexUnavailable when there is none)."""
        raise NotImplementedError

    def _tables_for(self, searcher) -> ReaderTables:
        """The postings tables of ``searcher``."""
        raise NotImplementedError

    def _stored_fields(self, searcher, docnum: int) -> dict:
        """The stored fields of document ``docnum`` (its description and chapter marks)."""
        raise NotImplementedError

    def _drop_searcher(self) -> None:
        """Let the searcher go (and what was kept from it); the next search opens the index again."""
        raise NotImplementedError


def _clause_mask(tables: ReaderTables, toks: tuple[str, ...]) -> np.ndarray:
    """Books having a word in the combined field, or a phrase's every word and every word pair
    (the words too: a pair is a hashed bucket, which a book without them may fill)."""
    words = tables.all_of("all", sorted(set(toks)))
    if len(toks) == 1:
        return words
    return words & tables.all_of("pairs", pairs_of(toks))


def books_matching(tables: ReaderTables, parsed: ParsedQuery, any_word: bool = False) -> np.ndarray:
    """The books matching ``parsed`` (every clause, or any with ``any_word``)."""
    masks = [_clause_mask(tables, toks) for toks in parsed.required]
    out = masks[0]
    for m in masks[1:]:
        out = (out | m) if any_word else (out & m)
    for toks in parsed.excluded:
        out &= ~_clause_mask(tables, toks)
    return out


def book_scores(tables: ReaderTables, parsed: ParsedQuery) -> tuple[np.ndarray, np.ndarray]:
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


def _as_int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default

"""A page of search results (``SearchPage``) and its hits (``Hit``): for each book on the page, the
chapter where the words are and a snippet of it (``HitSnippets``).

The chapter where the words are, and a snippet of it, are found for the books on the
asked page only, in the chapter texts the catalog keeps (``chapter_loader``): the
index holds no second copy of the text. Which chapters may hold the words, the chapter marks
stored with each book say (``appliance.search.chaptermarks``).
"""
from __future__ import annotations

import html
import itertools
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from appliance.lru import SizedLRU
from appliance.search.chaptermarks import chapters_with_all, chapters_with_any
from appliance.search.query import ParsedQuery
from appliance.search.snippets import SNIPPET_CHARS, _locator, make_snippet
from appliance.textfold import fold

logger = logging.getLogger(__name__)

__all__ = ["ChapterLoader", "Hit", "HitSnippets", "SearchPage"]

MAX_SNIPPET_CHAPTERS = 40  # chapters of one book read to find the words, at most
NAMED_SNIPPET_CHAPTERS = 3  # the same for a book whose title, authors or subjects hold the words
SNIPPET_BATCH = 4  # chapters the marks point to, read from the catalog in one query

# Of a chapter's text, decompressed for a snippet: first SNIPPET_FIRST_BYTES (most words are
# found there), then SNIPPET_HEAD_BYTES (enough for PHRASE_SCAN_CHARS of any script but CJK), then
# the whole chapter, each only when what was read cannot decide.
SNIPPET_FIRST_BYTES = 16 * 1024
SNIPPET_HEAD_BYTES = 96 * 1024
SNIPPET_CACHE_BYTES = 512 * 1024  # of snippets kept for books shown again for the same words
SNIPPET_KEY_BYTES = 400  # about what a snippet's key and entry take besides its text

# ``chapter_loader(book_id, positions, head=None)``: see ``SearchIndex``.
ChapterLoader = Callable[..., Iterable[tuple[int, str, str, bool]]]


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


class HitSnippets:
    """The hits of the books on a page, each with the chapter where the words are and a snippet of
    it, read with ``chapter_loader`` (none without it). A book's stored fields (its description
    and chapter marks) are asked for through ``stored_fields(docnum)``."""

    def __init__(self, chapter_loader: ChapterLoader | None):
        self.chapter_loader = chapter_loader
        # (book id, words, phrases, named) -> the hit's chapter position and title (or None) and snippet;
        # emptied whenever the index changes, since a change may be a new version of a book.
        self._kept: SizedLRU[tuple[int | None, str | None, str]] = SizedLRU(SNIPPET_CACHE_BYTES)

    def clear(self) -> None:
        self._kept.clear()

    def hits(self, parsed: ParsedQuery, top: list[tuple[int, float]], book_ids: np.ndarray, named: np.ndarray,
             stored_fields: Callable[[int], dict]) -> tuple[Hit, ...]:
        """The hits of ``top`` (document number, score), in its order; ``book_ids`` and ``named``
        are by document number."""
        words = frozenset(parsed.words())
        phrases = tuple(clause for clause in parsed.required if len(clause) > 1)
        out = []
        for docnum, score in top:
            book_id = int(book_ids[docnum])
            position, title, snippet = self._cached_snippet(stored_fields, docnum, book_id, words, phrases,
                                                            bool(named[docnum]))
            out.append(Hit(book_id, float(score), position, title, snippet))
        return tuple(out)

    def _cached_snippet(self, stored_fields: Callable[[int], dict], docnum: int, book_id: int, words: frozenset[str],
                        phrases: tuple[tuple[str, ...], ...], named: bool) -> tuple[int | None, str | None, str]:
        key = (book_id, words, phrases, named)
        found = self._kept.get(key)
        if found is None:
            found = self._snippet(stored_fields, docnum, book_id, words, phrases, named)
            self._kept.put(key, found, sys.getsizeof(found[2]) + SNIPPET_KEY_BYTES)
        return found

    def _snippet(self, stored_fields: Callable[[int], dict], docnum: int, book_id: int, words: frozenset[str],
                 phrases: tuple[tuple[str, ...], ...], named: bool) -> tuple[int | None, str | None, str]:
        """(chapter position, chapter title, snippet) of a hit. A book whose title, authors or
        subjects hold every clause (``named``) shows its description when the words are in it;
        other books, and those with a description without the words, show the first chapter
        with the words (a named book's words may be nowhere in its text: only its first
        chapters are read), else the description. For a quoted phrase, chapters that may hold
        all of its words come first."""
        stored = stored_fields(docnum)
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

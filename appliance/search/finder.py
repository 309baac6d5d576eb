"""One search entry point for the web pages, the JSON API and OPDS.

Answers from the full-text index; when the index is missing or being rebuilt,
answers title/author searches from SQLite so the box keeps serving.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlite_utils

from appliance.search.errors import IndexUnavailable
from appliance.search.index import SearchIndex
from appliance.storage import catalog

logger = logging.getLogger(__name__)


@dataclass
class Results:
    query: str
    total: int
    page: int
    pagelen: int
    books: list[dict]  # book summaries, each with "snippet", "chapter_position", "chapter_title"
    languages: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, int] = field(default_factory=dict)
    degraded: bool = False  # True when answered from SQLite (title/author only)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.pagelen))


def find_books(db: sqlite_utils.Database, index: SearchIndex, q: str, *, language: str | None = None,
               subject: str | None = None, page: int = 1, pagelen: int = 20) -> Results:
    try:
        found = index.search(q, language=language, subject=subject, page=page, pagelen=pagelen)
    except IndexUnavailable:
        logger.warning("search index unavailable; answering from the catalog")
        ids, total = catalog.fallback_search(db, q, language=language, offset=(page - 1) * pagelen, limit=pagelen)
        summary = catalog.books_summary(db, ids)
        books = [dict(summary[i], snippet="", chapter_position=None, chapter_title=None) for i in ids if i in summary]
        return Results(q, total, page, pagelen, books, degraded=True)
    summary = catalog.books_summary(db, [h.book_id for h in found.hits])
    books = []
    for hit in found.hits:
        if hit.book_id in summary:
            books.append(dict(summary[hit.book_id], snippet=hit.snippet, chapter_position=hit.chapter_position,
                              chapter_title=hit.chapter_title, score=hit.score))
    return Results(q, found.total, found.page, found.pagelen, books, dict(found.languages), dict(found.subjects))

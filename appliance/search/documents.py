"""What the index is given for each book (``IndexDoc``), and the fields whose matches add to a
book's score (``BOOST_FIELDS``).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BOOST_FIELDS", "IndexDoc"]

# Field weights: a title or author match outranks a body-only match.
# A book matches when every word is in ``all`` (title, authors, subjects, description and text)
# and every quoted phrase's word pairs are in ``pairs``; matches in the title, the authors and the
# subjects add to the score, so they rank above text-only matches.
BOOST_FIELDS = (("title", 6.0), ("authors", 5.0), ("subject_words", 2.5))


@dataclass(frozen=True)
class IndexDoc:
    book_id: int
    title: str
    authors: tuple[str, ...]
    subjects: tuple[str, ...]
    language: str
    description: str
    chapters: tuple[tuple[int, str, str], ...]  # (position, chapter title, plain text)

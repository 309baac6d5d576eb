"""What the index is given for each book (``IndexDoc``), the fields whose matches add to a
book's score (``BOOST_FIELDS``), and the index document made of a book (``index_documents``).

Each book gives one document (title, authors, subjects, description
and the text of all its chapters together in ``all``), so ranking, the total and
the facet counts are per book, and words may come from different chapters.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from appliance.search.chaptermarks import marks_of_words
from appliance.search.wordpairs import pair_term
from appliance.textfold import clean, fold, iter_folded_tokens

__all__ = ["BOOST_FIELDS", "DESCRIPTION_CHARS", "IndexDoc", "SEP", "index_documents"]

SEP = "\x1f"  # between values of one field (authors, subjects, chapters): phrases do not cross it
DESCRIPTION_CHARS = 2_000

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


def index_documents(doc: IndexDoc) -> Iterator[dict]:
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

"""Lists of the whole catalog that several pages show (the home page, the OPDS feeds): counted
over every book (4-5 ms each at 10,000 books), so counted again only when the catalog changes,
once per process."""
from __future__ import annotations

from appliance.storage import catalog
from appliance.storage.db import current_seq
from appliance.web.context import library_state

LISTS_SECONDS = 3600.0  # a bound besides the catalog's counter, which is what changes them
AUTHORS_SHOWN = 2000


def languages(db) -> list[dict]:
    """``catalog.languages``: the books' languages with their counts (not to be changed by the caller)."""
    return _kept("languages", db, catalog.languages)


def subjects(db) -> list[dict]:
    """``catalog.subjects``: the subjects with their counts (not to be changed by the caller)."""
    return _kept("subjects", db, catalog.subjects)


def count_authors(db) -> int:
    return _kept("author count", db, catalog.count_authors)


def first_authors(db) -> list[dict]:
    """The first ``AUTHORS_SHOWN`` authors by name, with their counts, for the authors page."""
    return _kept("authors", db, lambda d: catalog.authors(d, limit=AUTHORS_SHOWN))


def _kept(name: str, db, count):
    """``count(db)``, kept while the catalog's change counter stays the same."""
    return library_state().remembered(name, current_seq(db), LISTS_SECONDS, lambda: count(db))

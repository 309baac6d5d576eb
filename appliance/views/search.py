"""Full-text search pages."""
from __future__ import annotations

from flask import Blueprint, render_template

from .. import stats
from ..app import get_db, library_state
from ..finder import find_books
from ..textfold import fold
from .params import int_arg, language_arg, page_size, text_arg

bp = Blueprint("search", __name__)


@bp.get("/search")
def search():
    q = text_arg("q")
    language = language_arg("lang")
    subject = text_arg("subject", max_chars=200) or None
    page = int_arg("page", 1, maximum=500)
    results = None
    if q:
        results = find_books(get_db(), library_state().index, q, language=language, subject=subject,
                             page=page, pagelen=page_size())
        if page == 1 and language is None and subject is None:  # count a search once, not each page or filter
            stats.record_event("search", term=q, found=results.total > 0)
    folded = " ".join(fold(q).split())
    return render_template("search.html", q=q, folded=folded, results=results, language=language, subject=subject)

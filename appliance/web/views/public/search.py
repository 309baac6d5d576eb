"""Full-text search pages."""
from __future__ import annotations

from functools import partial
from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for

from appliance.search.finder import find_books
from appliance.stats import counts as stats
from appliance.textfold import fold
from appliance.web.context import get_db, library_state
from appliance.web.pagecache import ON_REPLAY
from appliance.web.views.params import int_arg, language_arg, page_size, text_arg

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
            count = partial(stats.record_event, "search", term=q, found=results.total > 0)
            count()
            request.environ[ON_REPLAY] = count  # and again each time this page is given from memory
    folded = " ".join(fold(q).split())
    return render_template("search.html", q=q, folded=folded, results=results, language=language, subject=subject,
                           search_link=partial(_link, url_for("search.search")))


def _link(base: str, **params: object) -> str:
    """``url_for("search.search", **params)`` from its base: a page has up to 16 such links (the
    language and subject chips), and werkzeug's URL building was a tenth of its time."""
    query = urlencode([(k, v) for k, v in params.items() if v is not None], safe="!$'()*,/:;?@")  # as werkzeug
    return f"{base}?{query}" if query else base

"""OPDS catalogs for reader apps: OPDS 1.2 under /opds, OPDS 2.0 under /opds/v2; anonymous, read-only."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, current_app, jsonify, request, url_for
from flask_babel import gettext as _

from appliance.langnames import language_name
from appliance.search.finder import find_books
from appliance.stats import counts as stats
from appliance.storage import catalog
from appliance.storage import db as dbmod
from appliance.web import opdsfeeds as opds
from appliance.web.context import get_db, library_state
from appliance.web.i18n import select_locale
from appliance.web.views import lists as catalog_lists
from appliance.web.views.params import int_arg, language_arg, page_size, text_arg

bp = Blueprint("opds", __name__, url_prefix="/opds")

MAX_SUBJECT_FACETS = 40
AUTHORS_PER_PAGE = 100


@dataclass
class Listing:
    """One page of books, with what both feed formats need to describe it."""

    feed_id: str
    title: str
    books: list[dict]
    total: int
    page: int
    per_page: int
    endpoint: str
    args: dict = field(default_factory=dict)
    facets: list[opds.Link] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


# -- freshness --------------------------------------------------------------------------------------


def _catalog_state() -> tuple[int, datetime]:
    """The catalog's change counter and when its files last changed (for Last-Modified)."""
    settings = library_state().settings
    seq = dbmod.current_seq(get_db())
    times = []
    for path in (settings.db_path, settings.db_path.with_name(settings.db_path.name + "-wal")):
        try:
            times.append(os.stat(path).st_mtime)
        except OSError:
            continue
    moment = datetime.fromtimestamp(int(max(times, default=0)), tz=UTC)
    return seq, moment


def _respond(body: bytes | dict, mimetype: str) -> Response:
    seq, moment = _catalog_state()
    response = jsonify(body) if isinstance(body, dict) else Response(body, mimetype=mimetype)
    response.mimetype = mimetype
    if mimetype.startswith("application/atom+xml"):
        response.headers["Content-Type"] = f"{mimetype}; charset=utf-8"
    tag = hashlib.sha256(f"{seq}|{request.full_path}|{mimetype}|{select_locale()}".encode()).hexdigest()[:32]
    response.set_etag(tag)
    response.last_modified = moment
    response.cache_control.public = True
    response.cache_control.max_age = 60
    return response.make_conditional(request)


def _updated() -> str:
    return opds.timestamp(_catalog_state()[1])


def _box_name() -> str:
    return library_state().settings.box_name


# -- books and their links -------------------------------------------------------------------------


def _book_links(books: list[dict]) -> dict[int, opds.BookLinks]:
    offline = "reader.offline" in current_app.view_functions
    out = {}
    for book in books:
        book_id = book["id"]
        out[book_id] = opds.BookLinks(
            page=url_for("books.book", book_id=book_id),
            epub=url_for("opds.download", book_id=book_id),
            offline_html=url_for("reader.offline", book_id=book_id) if offline else None,
            cover=url_for("books.cover", book_id=book_id) if book.get("cover_sha256") else None,
            cover_type=book.get("cover_type"),
            thumbnail=url_for("books.thumbnail", book_id=book_id) if book.get("thumb_sha256") else None,
        )
    return out


def _page_links(listing: Listing, kind: str) -> list[opds.Link]:
    def at(page: int) -> str:
        args = {k: v for k, v in listing.args.items() if v not in (None, "")}
        if page > 1:
            args["page"] = page
        return url_for(listing.endpoint, **args)

    links = [opds.Link("first", at(1), kind)]
    if listing.page > 1:
        links.append(opds.Link("previous", at(min(listing.page - 1, listing.pages)), kind))
    if listing.page < listing.pages:
        links.append(opds.Link("next", at(listing.page + 1), kind))
    links.append(opds.Link("last", at(listing.pages), kind))
    return links


def _common_links(kind: str, self_href: str) -> list[opds.Link]:
    v2 = kind == opds.OPDS2
    links = [
        opds.Link("self", self_href, kind),
        opds.Link("start", url_for("opds.root_v2" if v2 else "opds.root"), opds.OPDS2 if v2 else opds.NAVIGATION),
    ]
    if not v2:
        links.append(opds.Link("search", url_for("opds.opensearch"), opds.OPENSEARCH_TYPE))
        links.append(opds.Link("search", url_for("opds.search") + "?q={searchTerms}", opds.ACQUISITION))
    return links


def _atom_listing(listing: Listing) -> Response:
    links = _common_links(opds.ACQUISITION, request.full_path.rstrip("?"))
    links += _page_links(listing, opds.ACQUISITION) + listing.facets
    body = opds.acquisition_feed(listing.feed_id, listing.title, _updated(), links, listing.books,
                                 _book_links(listing.books), _box_name(), total=listing.total,
                                 per_page=listing.per_page, start=(listing.page - 1) * listing.per_page + 1)
    return _respond(body, opds.ACQUISITION)


def _json_listing(listing: Listing) -> Response:
    links = [opds.link2(link) for link in _common_links(opds.OPDS2, request.full_path.rstrip("?"))]
    links += [opds.link2(link) for link in _page_links(listing, opds.OPDS2)]
    book_links = _book_links(listing.books)
    feed: dict = {
        "metadata": {"title": listing.title, "numberOfItems": listing.total, "itemsPerPage": listing.per_page,
                     "currentPage": listing.page},
        "links": links,
    }
    if listing.books:
        feed["publications"] = [opds.publication(b, book_links[b["id"]]) for b in listing.books]
    else:  # OPDS 2 wants a non-empty collection: point back to the start instead
        feed["navigation"] = [opds.link2(opds.Link("start", url_for("opds.root_v2"), opds.OPDS2,
                                                   title=_("No books here; back to the start")))]
    groups: dict[str, list[dict]] = {}
    for facet in listing.facets:
        entry = opds.link2(opds.Link("self" if facet.active else "alternate", facet.href, opds.OPDS2,
                                     title=facet.title, count=facet.count))
        groups.setdefault(facet.facet_group or "", []).append(entry)
    if groups:
        feed["facets"] = [{"metadata": {"title": name}, "links": group} for name, group in groups.items()]
    return _respond(feed, opds.OPDS2)


def _render(listing: Listing, v2: bool) -> Response:
    return _json_listing(listing) if v2 else _atom_listing(listing)


# -- listings -------------------------------------------------------------------------------------


def _page() -> tuple[int, int]:
    return int_arg("page", 1), page_size()


def _books_page(order: str, **filters) -> tuple[list[dict], int, int, int]:
    page, per_page = _page()
    rows, total = catalog.list_books(get_db(), order=order, offset=(page - 1) * per_page, limit=per_page, **filters)
    return catalog.books_details(get_db(), [r["id"] for r in rows]), total, page, per_page


def _new_listing(v2: bool) -> Listing:
    books, total, page, per_page = _books_page("new")
    return Listing("new", _("New arrivals"), books, total, page, per_page, "opds.new_v2" if v2 else "opds.new")


def _all_listing(v2: bool) -> Listing:
    language = language_arg("lang")
    subject_id = int_arg("subject", 0, minimum=0, maximum=10**9) or None
    subject = catalog.get_subject(get_db(), subject_id) if subject_id else None
    if subject_id and subject is None:
        abort(404)
    books, total, page, per_page = _books_page("title", language=language, subject_id=subject_id)
    endpoint = "opds.all_v2" if v2 else "opds.all_books"
    kind = opds.OPDS2 if v2 else opds.ACQUISITION
    facets = [opds.Link(opds.FACET, url_for(endpoint, subject=subject_id), kind, title=_("All languages"),
                        facet_group=_("Language"), active=language is None, count=None)]
    for row in catalog_lists.languages(get_db()):
        facets.append(opds.Link(opds.FACET, url_for(endpoint, lang=row["language"], subject=subject_id), kind,
                                title=language_name(row["language"]), facet_group=_("Language"),
                                active=row["language"] == language, count=row["books"]))
    facets.append(opds.Link(opds.FACET, url_for(endpoint, lang=language), kind, title=_("All subjects"),
                            facet_group=_("Subject"), active=subject_id is None))
    for row in catalog_lists.subjects(get_db())[:MAX_SUBJECT_FACETS]:
        facets.append(opds.Link(opds.FACET, url_for(endpoint, lang=language, subject=row["id"]), kind,
                                title=row["name"], facet_group=_("Subject"), active=row["id"] == subject_id,
                                count=row["books"]))
    parts = [_("All books")]
    if language:
        parts.append(language_name(language))
    if subject:
        parts.append(subject["name"])
    feed_id = f"all:{language or ''}:{subject_id or ''}"
    return Listing(feed_id, " · ".join(parts), books, total, page, per_page, endpoint,
                   {"lang": language, "subject": subject_id}, facets)


def _author_listing(author_id: int, v2: bool) -> Listing:
    author = catalog.get_author(get_db(), author_id)
    if author is None:
        abort(404)
    books, total, page, per_page = _books_page("title", author_id=author_id)
    return Listing(f"author:{author_id}", author["name"], books, total, page, per_page,
                   "opds.author_v2" if v2 else "opds.author", {"author_id": author_id})


def _search_listing(v2: bool) -> Listing:
    q = text_arg("query" if v2 else "q") or text_arg("q")
    if not q:
        abort(400, "q is required")
    page, per_page = _page()
    results = find_books(get_db(), library_state().index, q, language=language_arg("lang"), page=page,
                         pagelen=per_page)
    books = catalog.books_details(get_db(), [b["id"] for b in results.books])
    return Listing(f"search:{q}", _("Search: %(q)s", q=q), books, results.total, page, per_page,
                   "opds.search_v2" if v2 else "opds.search", {"query" if v2 else "q": q})


# -- navigation -----------------------------------------------------------------------------------


def _root_entries(v2: bool) -> list[opds.NavEntry]:
    db = get_db()
    acq = opds.OPDS2 if v2 else opds.ACQUISITION
    nav = opds.OPDS2 if v2 else opds.NAVIGATION
    suffix = "_v2" if v2 else ""
    return [
        opds.NavEntry("new", _("New arrivals"), url_for("opds.new" + suffix), acq, _("The latest books on this box")),
        opds.NavEntry("languages", _("By language"), url_for("opds.languages" + suffix), nav,
                      count=len(catalog_lists.languages(db))),
        opds.NavEntry("subjects", _("By subject"), url_for("opds.subjects" + suffix), nav,
                      count=len(catalog_lists.subjects(db))),
        opds.NavEntry("authors", _("By author"), url_for("opds.authors" + suffix), nav,
                      count=catalog_lists.count_authors(db)),
        opds.NavEntry("all", _("All books"), url_for("opds.all_v2" if v2 else "opds.all_books"), acq,
                      count=catalog.count_books(db)),
    ]


def _language_entries(v2: bool) -> list[opds.NavEntry]:
    endpoint = "opds.all_v2" if v2 else "opds.all_books"
    kind = opds.OPDS2 if v2 else opds.ACQUISITION
    return [opds.NavEntry(f"language:{r['language']}", language_name(r["language"]),
                          url_for(endpoint, lang=r["language"]), kind, count=r["books"])
            for r in catalog_lists.languages(get_db())]


def _subject_entries(v2: bool) -> list[opds.NavEntry]:
    endpoint = "opds.all_v2" if v2 else "opds.all_books"
    kind = opds.OPDS2 if v2 else opds.ACQUISITION
    return [opds.NavEntry(f"subject:{r['id']}", r["name"], url_for(endpoint, subject=r["id"]), kind, count=r["books"])
            for r in catalog_lists.subjects(get_db())]


def _author_entries(v2: bool) -> tuple[list[opds.NavEntry], Listing]:
    page = int_arg("page", 1)
    total = catalog_lists.count_authors(get_db())
    rows = catalog.authors(get_db(), offset=(page - 1) * AUTHORS_PER_PAGE, limit=AUTHORS_PER_PAGE)
    endpoint = "opds.author_v2" if v2 else "opds.author"
    kind = opds.OPDS2 if v2 else opds.ACQUISITION
    entries = [opds.NavEntry(f"author:{r['id']}", r["name"], url_for(endpoint, author_id=r["id"]), kind,
                             count=r["books"]) for r in rows]
    listing = Listing("authors", _("By author"), [], total, page, AUTHORS_PER_PAGE,
                      "opds.authors_v2" if v2 else "opds.authors")
    return entries, listing


def _atom_navigation(feed_id: str, title: str, entries: list[opds.NavEntry], extra: list[opds.Link] = ()) -> Response:
    links = _common_links(opds.NAVIGATION, request.full_path.rstrip("?")) + list(extra)
    return _respond(opds.navigation_feed(feed_id, title, _updated(), links, entries, _box_name()), opds.NAVIGATION)


def _json_navigation(title: str, entries: list[opds.NavEntry], extra: list[dict] = ()) -> Response:
    links = [opds.link2(link) for link in _common_links(opds.OPDS2, request.full_path.rstrip("?"))]
    links += list(extra)
    navigation = [opds.link2(opds.Link("subsection", e.href, e.type, title=e.title, count=e.count)) for e in entries]
    if not navigation:  # a feed must have something; an empty box still answers with a valid one
        navigation = [opds.link2(opds.Link("start", url_for("opds.root_v2"), opds.OPDS2, title=_box_name()))]
    return _respond({"metadata": {"title": title}, "links": links, "navigation": navigation}, opds.OPDS2)


# -- OPDS 1.2 routes ------------------------------------------------------------------------------




@bp.get("")
@bp.get("/")
def root():
    name = _box_name()
    extra = [opds.Link("alternate", url_for("opds.root_v2"), opds.OPDS2, title="OPDS 2.0")]
    links = _common_links(opds.NAVIGATION, request.full_path.rstrip("?")) + extra
    body = opds.navigation_feed("root", name, _updated(), links, _root_entries(False), name)
    return _respond(body, opds.NAVIGATION)


@bp.get("/new")
def new():
    return _render(_new_listing(False), v2=False)


@bp.get("/all")
def all_books():
    return _render(_all_listing(False), v2=False)


@bp.get("/languages")
def languages():
    return _atom_navigation("languages", _("By language"), _language_entries(False))


@bp.get("/subjects")
def subjects():
    return _atom_navigation("subjects", _("By subject"), _subject_entries(False))


@bp.get("/authors")
def authors():
    entries, listing = _author_entries(False)
    return _atom_navigation("authors", listing.title, entries, _page_links(listing, opds.NAVIGATION))


@bp.get("/authors/<int:author_id>")
def author(author_id: int):
    return _render(_author_listing(author_id, False), v2=False)


@bp.get("/search")
def search():
    return _render(_search_listing(False), v2=False)


@bp.get("/opensearch.xml")
def opensearch():
    template = request.host_url.rstrip("/") + url_for("opds.search") + "?q={searchTerms}"
    body = opds.opensearch_description(_box_name(), _("Search the books of %(name)s", name=_box_name()), template)
    return _respond(body, opds.OPENSEARCH_TYPE)


@bp.get("/books/<int:book_id>/download")
def download(book_id: int):
    """The EPUB, as the reader apps fetch it (counted apart from browser downloads)."""
    from appliance.web.views.public.books import download as book_download

    answer = book_download(book_id)
    if request.method == "GET" and answer.status_code == 200:
        stats.record_event("download_opds", book_id=book_id)
    return answer


# -- OPDS 2.0 routes ------------------------------------------------------------------------------


@bp.get("/v2")
def root_v2():
    extra = [opds.link2(opds.Link("alternate", url_for("opds.root"), opds.NAVIGATION, title="OPDS 1.2")),
             opds.link2(opds.Link("search", url_for("opds.search_v2") + "{?query}", opds.OPDS2), templated=True)]
    return _json_navigation(_box_name(), _root_entries(True), extra)


@bp.get("/v2/new")
def new_v2():
    return _render(_new_listing(True), v2=True)


@bp.get("/v2/all")
def all_v2():
    return _render(_all_listing(True), v2=True)


@bp.get("/v2/languages")
def languages_v2():
    return _json_navigation(_("By language"), _language_entries(True))


@bp.get("/v2/subjects")
def subjects_v2():
    return _json_navigation(_("By subject"), _subject_entries(True))


@bp.get("/v2/authors")
def authors_v2():
    entries, listing = _author_entries(True)
    return _json_navigation(listing.title, entries, [opds.link2(link) for link in _page_links(listing, opds.OPDS2)])


@bp.get("/v2/authors/<int:author_id>")
def author_v2(author_id: int):
    return _render(_author_listing(author_id, True), v2=True)


@bp.get("/v2/search")
def search_v2():
    return _render(_search_listing(True), v2=True)

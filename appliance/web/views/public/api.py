"""The JSON API: the same data as the pages, for scripts and other boxes."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, url_for

from appliance.search.finder import find_books
from appliance.storage import catalog
from appliance.web.context import get_db, library_state
from appliance.web.views import lists as catalog_lists
from appliance.web.views.params import int_arg, language_arg, page_size, text_arg

bp = Blueprint("api", __name__, url_prefix="/api")


def _public(book: dict) -> dict:
    out = {
        "id": book["id"],
        "title": book["title"],
        "authors": book["authors"],
        "language": book["language"],
        "size": book["size"],
        "url": url_for("books.book", book_id=book["id"]),
        "download": url_for("books.download", book_id=book["id"]),
        "cover": url_for("books.cover", book_id=book["id"]) if book.get("cover_sha256") else None,
        "thumbnail": url_for("books.thumbnail", book_id=book["id"]) if book.get("thumb_sha256") else None,
    }
    for key in ("snippet", "chapter_position", "chapter_title"):
        if key in book:
            out[key] = book[key]
    return out


@bp.get("/books")
def books():
    page = int_arg("page", 1)
    size = page_size()
    rows, total = catalog.list_books(get_db(), order="new", language=language_arg("lang"),
                                     offset=(page - 1) * size, limit=size)
    return jsonify(total=total, page=page, page_size=size, books=[_public(b) for b in rows])


@bp.get("/books/<int:book_id>")
def book(book_id: int):
    found = catalog.get_book(get_db(), book_id)
    if found is None:
        abort(404)
    out = _public(found)
    out.update(
        description=found["description"],
        publisher=found["publisher"],
        published=found["published"],
        subjects=found["subjects"],
        warnings=[str(w) for w in found["warnings"]],
        chapters=[{"position": c["position"], "title": c["title"]} for c in found["chapters"]],
    )
    return jsonify(out)


@bp.get("/search")
def search():
    q = text_arg("q")
    if not q:
        abort(400, "q is required")
    page = int_arg("page", 1, maximum=500)
    results = find_books(get_db(), library_state().index, q, language=language_arg("lang"),
                         subject=text_arg("subject") or None, page=page, pagelen=page_size())
    return jsonify(
        query=results.query, total=results.total, page=results.page, pages=results.pages,
        degraded=results.degraded, languages=results.languages, subjects=results.subjects,
        books=[_public(b) for b in results.books],
    )


@bp.get("/languages")
def languages():
    return jsonify(languages=catalog_lists.languages(get_db()))


@bp.get("/subjects")
def subjects():
    return jsonify(subjects=catalog_lists.subjects(get_db()))

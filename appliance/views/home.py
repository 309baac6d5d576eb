"""Home page and browsing lists."""
from __future__ import annotations

from flask import Blueprint, abort, render_template

from .. import catalog
from ..app import get_db
from .params import int_arg, language_arg, page_size

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    db = get_db()
    new_books, total = catalog.list_books(db, order="new", limit=12)
    return render_template(
        "home.html",
        new_books=new_books,
        total=total,
        languages=catalog.languages(db),
        subjects=catalog.subjects(db)[:30],
    )


@bp.get("/browse")
def browse():
    """All books, optionally by language, with pagination."""
    db = get_db()
    page = int_arg("page", 1)
    language = language_arg("lang")
    size = page_size()
    books, total = catalog.list_books(db, order="title", language=language, offset=(page - 1) * size, limit=size)
    return render_template("list.html", heading=None, books=books, total=total, page=page, size=size,
                           language=language)


@bp.get("/subjects/<int:subject_id>")
def subject(subject_id: int):
    db = get_db()
    found = catalog.get_subject(db, subject_id)
    if found is None:
        abort(404)
    page = int_arg("page", 1)
    size = page_size()
    books, total = catalog.list_books(db, order="title", subject_id=subject_id, offset=(page - 1) * size, limit=size)
    return render_template("list.html", heading=found["name"], books=books, total=total, page=page, size=size,
                           language=None)


@bp.get("/authors")
def authors():
    return render_template("authors.html", authors=catalog.authors(get_db(), limit=2000))


@bp.get("/authors/<int:author_id>")
def author(author_id: int):
    db = get_db()
    found = catalog.get_author(db, author_id)
    if found is None:
        abort(404)
    page = int_arg("page", 1)
    size = page_size()
    books, total = catalog.list_books(db, order="title", author_id=author_id, offset=(page - 1) * size, limit=size)
    return render_template("list.html", heading=found["name"], books=books, total=total, page=page, size=size,
                           language=None)

"""Home page and browsing lists."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, url_for

from appliance.stats import counts as stats
from appliance.storage import catalog
from appliance.storage.db import current_seq, get_setting
from appliance.web.context import get_db, library_state
from appliance.web.i18n import COOKIE, LANGUAGES
from appliance.web.qr import qr_svg, wifi_payload
from appliance.web.views import lists as catalog_lists
from appliance.web.views.params import int_arg, language_arg, page_size

bp = Blueprint("home", __name__)


# "Most read this month" is counted again at most this often, or when the catalog changes: its
# query reads every count of 30 days (26 ms for the 46,000 of a box after its soaks here), which
# every phone's request waited for each time the home page was made again.
MOST_READ_SECONDS = 120.0


@bp.get("/")
def index():
    from appliance.web.views.public.reader import continue_reading

    db = get_db()
    new_books, total = catalog.list_books(db, order="new", limit=8)
    return render_template(
        "home.html",
        new_books=new_books,
        total=total,
        languages=catalog_lists.languages(db),
        subjects=catalog_lists.subjects(db)[:30],
        most_read=library_state().remembered("most read", current_seq(db), MOST_READ_SECONDS,
                                             lambda: stats.most_read(db, days=30, limit=5)),
        welcome=get_setting(db, "welcome_text"),
        resume=continue_reading(),
    )


@bp.get("/poster")
def poster():
    """A page to print and pin up: join the Wi-Fi, then open the library."""
    settings = library_state().settings
    address = f"http://{settings.local_domain}/"
    return render_template(
        "poster.html", ssid=settings.wifi_ssid,
        passphrase=settings.wifi_passphrase if settings.wifi_security == "wpa2" else "",
        wifi_qr=qr_svg(wifi_payload(settings.wifi_ssid, settings.wifi_security, settings.wifi_passphrase),
                       "Wi-Fi"),
        address=address, address_qr=qr_svg(address, address),
    )


@bp.get("/language/<code>")
def language(code: str):
    """Choose the interface language (kept in a cookie), then go back home."""
    if code not in LANGUAGES:
        abort(404)
    response = redirect(url_for("home.index"), code=303)
    response.set_cookie(COOKIE, code, max_age=365 * 86400, samesite="Lax", httponly=True)
    return response


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
    return render_template("authors.html", authors=catalog_lists.first_authors(get_db()))


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

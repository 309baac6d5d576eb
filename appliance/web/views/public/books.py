"""Book pages, downloads and covers."""
from __future__ import annotations

import hashlib
import urllib.parse

from flask import Blueprint, Response, abort, render_template, request, send_file, url_for
from flask_babel import gettext
from markupsafe import Markup, escape

from appliance.stats import counts as stats
from appliance.storage import catalog
from appliance.storage.atomic import atomic_write_bytes
from appliance.storage.blobs import BlobMissing
from appliance.textfold import fold
from appliance.web.context import get_db, library_state
from appliance.web.qr import qr_svg_file

bp = Blueprint("books", __name__)

EPUB_TYPE = "application/epub+zip"


def visible_book(book_id: int) -> dict:
    book = catalog.get_book(get_db(), book_id)
    if book is None:
        abort(404)
    return book


@bp.app_template_global("chapter_items")
def chapter_items(book: dict) -> Markup:
    """The ``<li>`` links of a book's chapters, for its page and its contents: one url_for and one
    string for the whole list (in the template's loop, the list was most of a long book's page)."""
    link = escape(url_for("reader.chapter", book_id=book["id"], position=0)[:-1])

    return Markup("".join(f'<li><a href="{link}{int(c["position"])}">{escape(chapter_name(n, c))}</a></li>'
                          for n, c in enumerate(book["chapters"], 1)))


def chapter_name(n: int, chapter: dict) -> str:
    """A chapter's title, or "Chapter n" in the page's language (n counts from 1 in the list)."""
    return chapter["title"] or gettext("Chapter %(n)d", n=n)


def with_chapter_names(book: dict) -> dict:
    """``book`` with every chapter named as its pages name it (for the offline copy)."""
    return dict(book, chapters=[dict(c, title=chapter_name(n, c)) for n, c in enumerate(book["chapters"], 1)])


def ascii_file_name(title: str, fallback: str, suffix: str) -> str:
    """A plain ASCII name that every reader app accepts: folded, dashes for anything else."""
    folded = fold(title)
    slug = "".join(c if (c.isascii() and c.isalnum()) else "-" for c in folded)
    slug = "-".join(part for part in slug.split("-") if part)[:80]
    return (slug or fallback) + suffix


def content_disposition(title: str, fallback: str, suffix: str) -> str:
    plain = ascii_file_name(title, fallback, suffix)
    real = (title.strip()[:120] or fallback) + suffix
    real = real.replace("/", "-").replace("\\", "-")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{urllib.parse.quote(real, safe='')}"


def send_blob(sha256: str | None, mimetype: str, *, download_title: str | None = None, fallback_name: str = "book",
              suffix: str = "", max_age: int = 86400) -> Response:
    """Stream a stored blob with ETag (its hash), Last-Modified and Range support."""
    state = library_state()
    if not sha256:
        abort(404)
    try:
        path = state.blobs.path(sha256)
        if not path.is_file():
            raise BlobMissing(sha256)
    except (BlobMissing, ValueError):
        abort(404)
    response = send_file(path, mimetype=mimetype, conditional=True, etag=sha256, max_age=max_age)
    if download_title is not None:
        response.headers["Content-Disposition"] = content_disposition(download_title, fallback_name, suffix)
    return response


@bp.get("/books/<int:book_id>")
def book(book_id: int):
    found = visible_book(book_id)
    stats.record_event("view", book_id=book_id)
    return render_template("book.html", book=found)


@bp.get("/books/<int:book_id>/qr.svg")
def book_qr(book_id: int):
    """The QR code of the book page's address, as the phone reached the box (by name or address)."""
    visible_book(book_id)
    link = request.host_url.rstrip("/") + url_for("books.book", book_id=book_id)
    response = Response(qr_svg_file(link), mimetype="image/svg+xml")
    response.set_etag(hashlib.sha256(link.encode("utf-8")).hexdigest()[:32])
    response.cache_control.max_age = 86400
    return response.make_conditional(request)


@bp.get("/books/<int:book_id>/download")
def download(book_id: int):
    book = visible_book(book_id)
    answer = send_blob(book["sha256"], EPUB_TYPE, download_title=book["title"], fallback_name=f"book-{book_id}",
                       suffix=".epub")
    if answer.status_code == 200 and request.endpoint == "books.download":  # whole files only, not each range
        stats.record_event("download_epub", book_id=book_id)
    return answer


@bp.get("/books/<int:book_id>/cover")
def cover(book_id: int):
    book = visible_book(book_id)
    return send_blob(book["cover_sha256"], book["cover_type"] or "image/jpeg", max_age=7 * 86400)


@bp.get("/books/<int:book_id>/thumbnail")
def thumbnail(book_id: int):
    book = visible_book(book_id)
    return send_blob(book["thumb_sha256"], "image/jpeg", max_age=7 * 86400)


SHARP_COVER_WIDTH = 320  # the book page shows its cover 160 px wide: this serves screens of two pixels a point


@bp.get("/books/<int:book_id>/cover/<int:width>")
def sized_cover(book_id: int, width: int):
    """The cover made for the page (a full-size one was 680 KB, shown 160 px wide, for every phone
    of a room), made once and kept with the box's cached files."""
    from appliance.books.covers import make_thumbnail

    book = visible_book(book_id)
    if width != SHARP_COVER_WIDTH or not book["cover_sha256"]:
        abort(404)
    state = library_state()
    kept = state.settings.home / "cache" / "covers" / f"{book['cover_sha256']}-{width}.jpg"
    if not kept.is_file():
        try:
            made = make_thumbnail(state.blobs.path(book["cover_sha256"]).read_bytes(), (width, width * 3 // 2),
                                  target_bytes=40 * 1024)
        except (OSError, ValueError):
            made = None
        if made is None:
            abort(404)
        kept.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(kept, made)
    return send_file(kept, mimetype="image/jpeg", conditional=True, etag=f"{book['cover_sha256'][:24]}-{width}",
                     max_age=30 * 86400)

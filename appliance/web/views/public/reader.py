"""Reading on the box: one chapter per page, rendered by the server, working with JavaScript off.

Reading preferences (font size, dark pages) live in the ``rp`` cookie and the last place read in the
``last`` cookie; both stay in the reader's phone (no account, nothing stored on the box).

A chapter is read from the EPUB up to ``MAX_CHAPTER_BYTES`` (a larger one, in a book imported before
that limit, shows why it cannot be shown), and a process renders at most ``LARGE_RENDERS`` chapters
over ``LARGE_CHAPTER_BYTES`` at once (each takes tens of MB while it is rendered).
"""
from __future__ import annotations

import contextlib
import io
import mimetypes
import posixpath
import sys
import threading
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from appliance.books import chapterhtml as bookhtml
from appliance.books.container import MAX_CHAPTER_BYTES, EpubUnreadable, read_member
from appliance.stats import counts as stats
from appliance.storage import catalog
from appliance.web.context import get_db, library_state
from appliance.web.views.params import int_arg
from appliance.web.views.public.books import content_disposition, visible_book, with_chapter_names

bp = Blueprint("reader", __name__)

PREFS_COOKIE = "rp"
LAST_COOKIE = "last"
SIZES = (85, 100, 115, 135, 160)
PICTURE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/svg+xml", "image/bmp"}
YEAR = 365 * 86400
LARGE_CHAPTER_BYTES = 1024 * 1024
LARGE_RENDERS = 2
_large_renders = threading.BoundedSemaphore(LARGE_RENDERS)


def prefs() -> dict:
    raw = request.cookies.get(PREFS_COOKIE, "")
    size, dark = 1, False
    if len(raw) == 2 and raw[0].isdigit() and raw[1] in "01":
        size, dark = min(int(raw[0]), len(SIZES) - 1), raw[1] == "1"
    return {"size": size, "percent": SIZES[size], "dark": dark}


def last_read() -> tuple[int, int, int] | None:
    """(book id, chapter position, page) from the reader's cookie, if well formed."""
    parts = request.cookies.get(LAST_COOKIE, "").split(".")
    if len(parts) == 3 and all(p.isdigit() and len(p) < 10 for p in parts):
        return int(parts[0]), int(parts[1]), int(parts[2])
    return None


def _epub(book: dict):
    return library_state().blobs.path(book["sha256"])


def _chapter_positions(book: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in book["chapters"]:
        out.setdefault(c["href"], c["position"])
        out.setdefault(c["href"].lower(), c["position"])
    return out


def is_vertical(book: dict, raw: bytes, href: str) -> bool:
    if not (book.get("language") or "").startswith(("ja", "zh", "ko", "mn")):
        return False
    sheets = []
    for sheet in bookhtml.stylesheets(raw)[:5]:
        target = bookhtml.resolve(href, sheet)
        if target:
            try:
                sheets.append(read_member(_epub(book), target[0])[:200_000])
            except (KeyError, EpubUnreadable):
                continue
    return bookhtml.looks_vertical(raw[:50_000], *sheets)


def render_chapter(book: dict, position: int) -> tuple[list[str], bool]:
    """The chapter's sanitized pages and whether it is set vertically."""
    chapter = next((c for c in book["chapters"] if c["position"] == position), None)
    if chapter is None:
        abort(404)
    state = library_state()
    limit = state.settings.max_chapter_kb * 1024
    # Kept for the next reader of the same chapter (a class reading one book together), under the
    # book file's hash: a new version renders afresh.
    key = (book["id"], book["sha256"], book.get("language"), position, request.script_root, limit)
    rendered = state.rendered_chapters.get(key)
    if rendered is None:
        large = (chapter.get("html_bytes") or 0) > LARGE_CHAPTER_BYTES
        with _large_renders if large else contextlib.nullcontext():
            rendered = _render(book, chapter, limit)
        state.rendered_chapters.put(key, rendered, sum(sys.getsizeof(page) for page in rendered[0]))
    return rendered


def _render(book: dict, chapter: dict, limit: int) -> tuple[list[str], bool]:
    raw = read_member(_epub(book), chapter["href"], limit=MAX_CHAPTER_BYTES)
    positions = _chapter_positions(book)
    book_id = book["id"]

    def picture_url(path: str) -> str | None:
        return url_for("reader.file", book_id=book_id, href=path)

    def chapter_url(path: str) -> str | None:
        pos = positions.get(path, positions.get(path.lower()))
        return url_for("reader.chapter", book_id=book_id, position=pos) if pos is not None else None

    body = bookhtml.clean_chapter(bookhtml.chapter_body(raw), base_href=chapter["href"], picture_url=picture_url,
                                  chapter_url=chapter_url)
    return bookhtml.split_pages(body, limit), is_vertical(book, raw, chapter["href"])


@bp.get("/books/<int:book_id>/read")
def start(book_id: int):
    book = visible_book(book_id)
    if not book["chapters"]:
        abort(404)
    last = last_read()
    if last and last[0] == book_id:
        return redirect(url_for("reader.chapter", book_id=book_id, position=last[1], page=last[2] if last[2] > 1 else None))
    return redirect(url_for("reader.chapter", book_id=book_id, position=book["chapters"][0]["position"]))


@bp.get("/books/<int:book_id>/read/<int:position>")
def chapter(book_id: int, position: int):
    book = visible_book(book_id)
    page = int_arg("page", 1)
    chapters = book["chapters"]
    try:
        pages, vertical = render_chapter(book, position)
        error = None
    except (KeyError, EpubUnreadable) as e:
        pages, vertical, error = [""], False, str(e) if isinstance(e, EpubUnreadable) else "missing"
    if page > len(pages):
        abort(404)
    index = next(i for i, c in enumerate(chapters) if c["position"] == position)
    previous = chapters[index - 1] if index > 0 else None
    following = chapters[index + 1] if index + 1 < len(chapters) else None
    if page == 1:
        stats.record_event("read", book_id=book_id)
    language = (book.get("language") or "").split("-")[0]
    response = make_response(render_template(
        "reader.html", book=book, chapter=chapters[index], html=pages[page - 1], page=page, pages=len(pages),
        previous=previous, following=following, prefs=prefs(), vertical=vertical, error=error,
        direction="rtl" if language in bookhtml.RTL_LANGUAGES else "ltr",
    ))
    response.set_cookie(LAST_COOKIE, f"{book_id}.{position}.{page}", max_age=YEAR, samesite="Lax", httponly=True)
    return response


@bp.get("/books/<int:book_id>/contents")
def contents(book_id: int):
    return render_template("contents.html", book=visible_book(book_id), prefs=prefs())


@bp.get("/books/<int:book_id>/file/<path:href>")
def file(book_id: int, href: str):
    """A picture from inside the book (nothing else: no scripts, fonts or style sheets)."""
    book = visible_book(book_id)
    href = posixpath.normpath(href)
    kind = mimetypes.guess_type(href)[0]
    if kind not in PICTURE_TYPES or href.startswith(("../", "/")):
        abort(404)
    try:
        data = read_member(_epub(book), href)
    except (KeyError, EpubUnreadable):
        abort(404)
    response = Response(data, mimetype=kind)
    response.headers["Cache-Control"] = "public, max-age=604800"
    if kind == "image/svg+xml":  # an SVG opened on its own must not run anything
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response


@bp.get("/reader/settings")
def settings():
    """Change font size or dark pages (links, so it works without JavaScript), then go back."""
    current = prefs()
    size, dark = current["size"], current["dark"]
    change = request.args.get("size")
    if change == "up":
        size = min(size + 1, len(SIZES) - 1)
    elif change == "down":
        size = max(size - 1, 0)
    if request.args.get("dark") in ("0", "1"):
        dark = request.args["dark"] == "1"
    back = request.args.get("back", "")
    parts = urlsplit(back)
    if (parts.scheme or parts.netloc or not back.startswith("/") or back.startswith("//") or "\\" in back
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in back)):  # a line break would split the Location header
        back = url_for("home.index")
    response = redirect(back, code=303)
    response.set_cookie(PREFS_COOKIE, f"{size}{int(dark)}", max_age=YEAR, samesite="Lax", httponly=True)
    return response


@bp.get("/books/<int:book_id>/offline")
def offline(book_id: int):
    """The whole book as one HTML file to keep on the phone and read without the Wi-Fi."""
    from appliance.books.offline import OfflineBusy, offline_file, offline_key

    book = with_chapter_names(visible_book(book_id))
    settings = library_state().settings
    max_bytes = settings.offline_html_max_mb * 1024 * 1024
    key = offline_key(book, max_bytes)
    if request.if_none_match.contains(key) and not request.range:
        response = Response(status=304)  # the phone has it: nothing to make or send
        response.set_etag(key)
        return response
    try:
        found = offline_file(book, _epub(book), max_bytes, key, settings.offline_dir,
                             settings.disk_reserve_mb * 1024 * 1024)
    except EpubUnreadable:
        abort(404)
    except OfflineBusy:  # another request has been making it for a minute
        abort(503)
    body = io.BytesIO(found) if isinstance(found, bytes) else found  # not kept: the disk is nearly full
    response = send_file(body, mimetype="text/html", conditional=True, etag=key, max_age=86400)
    if response.status_code == 200:  # whole files only, not each range
        stats.record_event("download_html", book_id=book_id)
    response.headers["Content-Disposition"] = content_disposition(book["title"], f"book-{book_id}", ".html")
    return response


def continue_reading() -> dict | None:
    """The book and place the reader's cookie remembers, for the home page."""
    last = last_read()
    if last is None:
        return None
    book = catalog.get_book(get_db(), last[0])
    if book is None:
        return None
    chapter = next((c for c in book["chapters"] if c["position"] == last[1]), None)
    if chapter is None:
        return None
    return {"book": book, "chapter": chapter, "page": last[2]}

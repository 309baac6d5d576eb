"""Librarian pages for books: list, upload, edit metadata and cover, hide, remove."""
from __future__ import annotations

import io
import re
import warnings

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _

from appliance.books import quarantine
from appliance.langnames import language_code
from appliance.storage import catalog
from appliance.textfold import fold
from appliance.web.context import get_db, library_state
from appliance.web.i18n import in_page_language
from appliance.web.views.admin.access import bp

PER_PAGE = 50
UPLOAD_QUARANTINE_SHOWN = 20  # the latest quarantined files under the upload form
COVER_MAX_PIXELS = 40_000_000
COVER_MAX_SIDE = 1600
COVER_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
LIMITS = {"title": 500, "publisher": 300, "published": 40, "description": 5000}
MAX_AUTHORS, MAX_SUBJECTS, MAX_NAME = 20, 30, 200


class FormInvalid(ValueError):
    """A field of the edit form cannot be saved; the message is for the librarian, in their language."""


def admin_book(book_id: int) -> dict:
    book = catalog.get_book(get_db(), book_id, include_hidden=True)
    if book is None:
        abort(404)
    return book


@bp.get("/books")
def books():
    db = get_db()
    q = request.args.get("q", "").strip()[:200]
    try:
        page = max(1, min(int(request.args.get("page", "1")), 10_000))
    except ValueError:
        abort(400, _("The page must be a whole number."))
    where, params = "1 = 1", []
    if q:
        like = "%" + fold(q).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where, params = "title_fold LIKE ? ESCAPE '\\'", [like]
    total = db.execute(f"SELECT count(*) FROM books WHERE {where}", params).fetchone()[0]
    rows = list(db.query(
        f"SELECT id, title, language, hidden, source, file_name FROM books WHERE {where} "
        "ORDER BY added_seq DESC LIMIT ? OFFSET ?", [*params, PER_PAGE, (page - 1) * PER_PAGE]))
    return render_template("admin/books.html", rows=rows, q=q, page=page, total=total, per_page=PER_PAGE)


@bp.route("/upload", methods=["GET", "POST"])
def upload():
    settings = library_state().settings
    outcomes = None
    if request.method == "POST":
        files = request.files.getlist("files")
        from appliance.books.uploads import import_uploads

        outcomes = import_uploads(files, settings, get_db())
        if not outcomes:
            flash(_("Choose one or more EPUB files first."))
    quarantined = catalog.quarantined(get_db(), UPLOAD_QUARANTINE_SHOWN)
    status = 200
    if outcomes and all(o.status == "refused" for o in outcomes):
        status = 400
    return render_template("admin/upload.html", outcomes=outcomes, quarantined=quarantined,
                           limit_mb=settings.upload_max_mb), status


@bp.post("/quarantine/<int:entry_id>/retry")
def quarantine_retry(entry_id: int):
    """Read a quarantined file again (a newer version of the box may read it)."""
    from appliance.books.uploads import retry_quarantined

    db, settings = get_db(), library_state().settings
    entry = _quarantine_entry(db, entry_id)
    name = entry["file_name"]
    outcome = retry_quarantined(entry, settings, db)
    if outcome.status == "imported":
        flash(_("%(name)s could be read this time and is now in the catalog.", name=name))
    elif outcome.status == "duplicate":
        quarantine.forget(settings, db, entry["sha256"])
        flash(_("%(name)s is in the catalog already; it is taken out of quarantine.", name=name))
    else:  # quarantined again (why: a kept message), or refused (why: already in the page's language)
        reason = outcome.message if isinstance(outcome.message, str) else in_page_language(outcome.message)
        flash(_("%(name)s still cannot be read: %(reason)s", name=name, reason=reason))
    return redirect(_quarantine_page(), code=303)


@bp.get("/quarantine/<int:entry_id>/file")
def quarantine_file(entry_id: int):
    """The quarantined file itself, to pass on to whoever can mend it."""
    entry = _quarantine_entry(get_db(), entry_id)
    copy = quarantine.copy_path(library_state().settings, entry["sha256"], entry["file_name"])
    if not copy.is_file():
        abort(404, _("The file is no longer in the quarantine folder."))
    return send_file(copy, mimetype="application/octet-stream", as_attachment=True,
                     download_name=entry["file_name"] or "book.epub", max_age=0)


@bp.post("/quarantine/<int:entry_id>/remove")
def quarantine_remove(entry_id: int):
    """Forget a quarantined file and delete its copy."""
    db = get_db()
    entry = _quarantine_entry(db, entry_id)
    quarantine.forget(library_state().settings, db, entry["sha256"])
    flash(_("%(name)s is taken out of quarantine and its copy deleted.", name=entry["file_name"]))
    return redirect(_quarantine_page(), code=303)


def _quarantine_entry(db, entry_id: int) -> dict:
    entry = catalog.quarantine_entry(db, entry_id)
    if entry is None:
        abort(404, _("This file is not in quarantine."))
    return entry


def _quarantine_page() -> str:
    """Back to the page the librarian acted from, the upload page or the system page (at its top,
    where the message saying what happened is)."""
    return url_for("admin.upload" if request.form.get("back") == "upload" else "admin.system")


def _too_long(name: str) -> str:
    """The message for a field longer than LIMITS allows, in the librarian's language."""
    most = LIMITS[name]
    return {
        "title": _("The title can have at most %(n)d characters.", n=most),
        "publisher": _("The publisher can have at most %(n)d characters.", n=most),
        "published": _("The date published can have at most %(n)d characters.", n=most),
        "description": _("The description can have at most %(n)d characters.", n=most),
    }[name]


def _one_line(name: str, raw: str) -> str:
    value = " ".join((raw or "").split())
    if len(value) > LIMITS[name]:
        raise FormInvalid(_too_long(name))
    return value


def _lines(raw: str, most: int, too_many: str, too_long: str) -> list[str]:
    values = [" ".join(line.split()) for line in (raw or "").replace(";", "\n").splitlines()]
    values = [v for v in values if v]
    if len(values) > most:
        raise FormInvalid(too_many)
    if any(len(v) > MAX_NAME for v in values):
        raise FormInvalid(too_long)
    return values


def read_book_form(form) -> dict:
    title = _one_line("title", form.get("title", ""))
    if not title:
        raise FormInvalid(_("A book needs a title."))
    typed = form.get("language", "").strip()
    language = ""
    if typed:
        code = language_code(typed) if len(typed) <= 60 else None
        if code is None or len(code) > 20 or not LANGUAGE_TAG.match(code):
            raise FormInvalid(_("“%(typed)s” is not a language: type a code such as vi, or a name such as "
                                "Tiếng Việt.", typed=typed[:60]))
        language = code
    description = "\n".join(" ".join(line.split()) for line in form.get("description", "").splitlines()).strip()
    if len(description) > LIMITS["description"]:
        raise FormInvalid(_too_long("description"))
    return {
        "title": title,
        "authors": _lines(form.get("authors", ""), MAX_AUTHORS,
                          _("A book can have at most %(n)d authors.", n=MAX_AUTHORS),
                          _("An author's name can have at most %(n)d characters.", n=MAX_NAME)),
        "language": language,
        "subjects": _lines(form.get("subjects", ""), MAX_SUBJECTS,
                           _("A book can have at most %(n)d subjects.", n=MAX_SUBJECTS),
                           _("A subject can have at most %(n)d characters.", n=MAX_NAME)),
        "description": description,
        "publisher": _one_line("publisher", form.get("publisher", "")),
        "published": _one_line("published", form.get("published", "")),
    }


@bp.route("/books/<int:book_id>", methods=["GET", "POST"])
def edit_book(book_id: int):
    book = admin_book(book_id)
    if request.method == "POST":
        try:
            fields = read_book_form(request.form)
        except FormInvalid as e:
            return render_template("admin/book_edit.html", book=book, form=request.form, error=str(e)), 400
        catalog.update_book(get_db(), book_id, **fields)
        flash(_("Saved. Search results follow within a few seconds."))
        return redirect(url_for("admin.edit_book", book_id=book_id), code=303)
    return render_template("admin/book_edit.html", book=book, form=None, error=None)


def cover_from_upload(data: bytes) -> bytes:
    """A re-encoded JPEG of an uploaded picture (which also drops its metadata), or FormInvalid."""
    from PIL import Image

    from appliance.books.covers import MAX_DECODED_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as picture:
                if picture.format not in COVER_FORMATS:
                    raise FormInvalid(_("The cover must be a JPEG, PNG, GIF or WebP picture."))
                if picture.width * picture.height > COVER_MAX_PIXELS:
                    raise FormInvalid(_("The picture is too large (too many pixels)."))
                picture.draft("RGB", (COVER_MAX_SIDE, COVER_MAX_SIDE))
                if picture.width * picture.height > MAX_DECODED_PIXELS:  # what decoding it would hold
                    raise FormInvalid(_("The picture is too large (too many pixels)."))
                rgb = picture.convert("RGBA") if "transparency" in picture.info or picture.mode in ("RGBA", "LA", "P") \
                    else picture.convert("RGB")
                rgb.thumbnail((COVER_MAX_SIDE, COVER_MAX_SIDE), Image.Resampling.LANCZOS)
                if rgb.mode == "RGBA":
                    flat = Image.new("RGB", rgb.size, (255, 255, 255))
                    flat.paste(rgb, mask=rgb.getchannel("A"))
                    rgb = flat
                out = io.BytesIO()
                rgb.save(out, "JPEG", quality=85, optimize=True)
                return out.getvalue()
    except FormInvalid:
        raise
    except Exception:  # untrusted bytes: any decoder error means "not a picture"
        raise FormInvalid(_("That file is not a picture this library can read.")) from None


@bp.post("/books/<int:book_id>/cover")
def book_cover(book_id: int):
    from appliance.books.covers import make_thumbnail

    book = admin_book(book_id)
    upload = request.files.get("cover")
    data = upload.read() if upload else b""
    try:
        if not data:
            raise FormInvalid(_("Choose a picture for the cover first."))
        cover = cover_from_upload(data)
        thumbnail = make_thumbnail(cover)
        if thumbnail is None:
            raise FormInvalid(_("That file is not a picture this library can read."))
    except FormInvalid as e:
        return render_template("admin/book_edit.html", book=book, form=None, error=str(e)), 400
    blobs = library_state().blobs
    catalog.update_book(get_db(), book_id, cover_sha256=blobs.put_bytes(cover), cover_type="image/jpeg",
                        thumb_sha256=blobs.put_bytes(thumbnail))
    flash(_("The new cover is saved."))
    return redirect(url_for("admin.edit_book", book_id=book_id), code=303)


@bp.post("/books/<int:book_id>/visibility")
def book_visibility(book_id: int):
    admin_book(book_id)
    hidden = request.form.get("hidden") == "1"
    catalog.update_book(get_db(), book_id, hidden=1 if hidden else 0)
    flash(_("The book is hidden from readers.") if hidden else _("Readers can see the book again."))
    return redirect(url_for("admin.edit_book", book_id=book_id), code=303)


@bp.route("/books/<int:book_id>/remove", methods=["GET", "POST"])
def remove_book(book_id: int):
    book = admin_book(book_id)
    if request.method == "POST":
        catalog.remove_book(get_db(), book_id)
        flash(_("“%(title)s” is removed from the catalog.", title=book["title"]))
        return redirect(url_for("admin.books"), code=303)
    return render_template("admin/book_remove.html", book=book)

"""EPUB files uploaded by a librarian from a browser: checked, staged inside the data folder, imported.

What an upload goes through, in order:

1. Its size: the whole request is capped by Flask's ``MAX_CONTENT_LENGTH`` (``upload_max_mb``);
   a bigger one gets a 413 page that says the limit.
2. While the request is read, file parts are written only to unnamed temporary files in
   ``staging/uploads/`` inside the data folder (never to /tmp, which is RAM on many boxes); the
   operating system removes them when they are closed, or after a power cut.
3. Its name: a name with a folder part (``../../evil.epub``, ``C:\\x.epub``), control characters,
   or without ``.epub`` is refused. The name on disk is made by werkzeug's ``secure_filename``
   after folding Vietnamese and other accents to ASCII, inside a fresh folder of
   ``staging/uploads/``; the resolved path is checked to be inside that folder.
4. Its content: it must be a ZIP archive with an EPUB ``mimetype`` entry or a
   ``META-INF/container.xml``; archives that would unpack to too much (a zip bomb) are refused by
   the total size and compression ratio their directory declares. (Python's zipfile never unpacks
   more than an entry declares, so the declared sizes bound the work of anything reading it.)
5. Then the same Importer as ``library import``: unreadable EPUBs are quarantined with a reason.
   The search index follows in the background (the request does no index work).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import sqlite_utils
from flask import Flask, Request, current_app
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from appliance.books import quarantine
from appliance.messages import N_, Message, say
from appliance.settings import Settings
from appliance.storage.atomic import NotEnoughDisk

logger = logging.getLogger(__name__)

EPUB_MIMETYPE = b"application/epub+zip"
MAX_NAME_CHARS = 200
MAX_FILES_PER_UPLOAD = 50
# Zip bomb limits, checked on the archive's directory before anything reads the entries.
MAX_ENTRIES = 10_000
MAX_TOTAL_UNPACKED = 1024 * 1024 * 1024  # 1 GiB
MAX_RATIO = 100  # unpacked / packed, for an entry or for the whole archive
RATIO_FREE_BYTES = 2 * 1024 * 1024  # small entries may compress as well as they like


class UploadRefused(ValueError):
    """An uploaded file is not accepted; the message says why, in the librarian's language (it is
    made while the upload's request is handled)."""


def uploads_dir(settings: Settings) -> Path:
    return settings.staging_dir / "uploads"


class StagingRequest(Request):
    """A request whose uploaded file parts are spooled inside the data folder, never in /tmp."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        folder = Path(current_app.config["LIBRARY_UPLOADS_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile("w+b", dir=folder)


def init_uploads(app: Flask, settings: Settings) -> None:
    app.config["LIBRARY_UPLOADS_DIR"] = str(uploads_dir(settings))
    app.request_class = StagingRequest


def clean_staging(settings: Settings) -> int:
    """Remove what uploads interrupted by a power cut or a crash left in staging (at server start)."""
    folder = uploads_dir(settings)
    removed = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    return removed


def _ascii_fold(text: str) -> str:
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def safe_file_name(raw: str | None) -> str:
    """The name to store an uploaded file under, or UploadRefused with the reason."""
    name = unicodedata.normalize("NFC", raw or "").strip()
    if not name:
        raise UploadRefused(_("The file has no name."))
    shown = name[:80]
    if len(name) > MAX_NAME_CHARS:
        raise UploadRefused(_("The file name is too long (at most %(n)d characters).", n=MAX_NAME_CHARS))
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UploadRefused(_("The file name contains control characters."))
    if "/" in name or "\\" in name or ".." in name:
        raise UploadRefused(_("The file name “%(name)s” points into other folders; rename the file and try again.",
                               name=shown))
    if name.startswith("."):
        raise UploadRefused(_("The file name must not start with a dot."))
    if not name.lower().endswith(".epub"):
        raise UploadRefused(_("“%(name)s” is not an EPUB file: only .epub files can be uploaded.", name=shown))
    stem = secure_filename(_ascii_fold(name[:-5]))[:100].strip("._") or "book"
    return stem + ".epub"


def check_epub_archive(path: Path, *, max_total: int = MAX_TOTAL_UNPACKED, max_ratio: int = MAX_RATIO,
                       max_entries: int = MAX_ENTRIES) -> None:
    """Refuse (UploadRefused) a file that is not an EPUB container or would unpack to too much."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > max_entries:
                raise UploadRefused(_("The file holds %(n)d parts; an EPUB may hold at most %(most)d.",
                                      n=len(entries), most=max_entries))
            packed = sum(e.compress_size for e in entries)
            unpacked = sum(e.file_size for e in entries)
            if unpacked > max_total:
                raise UploadRefused(_(
                    "The file would unpack to %(mb)d MB, more than the %(most)d MB allowed: it looks like a zip "
                    "bomb.", mb=unpacked // 2**20, most=max_total // 2**20))
            for e in entries:
                if e.file_size > RATIO_FREE_BYTES and e.file_size > max_ratio * max(e.compress_size, 1):
                    raise UploadRefused(_(
                        "A part of the file (%(part)s) is packed more than %(ratio)d times: it looks like a zip "
                        "bomb.", part=e.filename[:60], ratio=max_ratio))
            if unpacked > RATIO_FREE_BYTES and unpacked > max_ratio * max(packed, 1):
                raise UploadRefused(_("The file is packed more than %(ratio)d times: it looks like a zip bomb.",
                                      ratio=max_ratio))
            names = {e.filename for e in entries}
            has_mimetype = False
            if "mimetype" in names:
                info = archive.getinfo("mimetype")
                if info.file_size <= 100:
                    has_mimetype = archive.read(info).strip() == EPUB_MIMETYPE
            if not has_mimetype and "META-INF/container.xml" not in names:
                raise UploadRefused(_("The file is a ZIP archive but not an EPUB (no EPUB mimetype or container)."))
    except UploadRefused:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise UploadRefused(_("The file is not an EPUB (it is not a readable ZIP archive: %(error)s).",
                              error=e)) from None


@dataclass
class UploadOutcome:
    """What happened to one uploaded file."""

    name: str  # the name the librarian's device gave, for display
    status: str  # imported | duplicate | quarantined | refused
    message: str | Message = ""  # why it was refused, or quarantined (a Message)
    book_id: int | None = None
    warnings: tuple[Message, ...] = ()


def _stage(storage: FileStorage, settings: Settings, limit: int) -> Path:
    """Copy an uploaded part into a fresh folder of staging/uploads; returns the file's path."""
    name = safe_file_name(storage.filename)
    folder = _staging_folder(settings, "upload-")
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        shutil.rmtree(folder, ignore_errors=True)
        raise UploadRefused(_("The file name is not acceptable."))
    written = 0
    try:
        with open(target, "xb") as out:
            while chunk := storage.stream.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise UploadRefused(_("The file is bigger than the upload limit of %(mb)d MB.",
                                          mb=limit // 2**20))
                out.write(chunk)
        if written == 0:
            raise UploadRefused(_("The file is empty."))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return target


def import_upload(storage: FileStorage, settings: Settings, db: sqlite_utils.Database) -> UploadOutcome:
    """Check, stage and import one uploaded file; the staged copy is always removed afterwards."""
    shown = (storage.filename or "").strip()[:120] or "?"
    try:
        path = _stage(storage, settings, settings.upload_max_mb * 1024 * 1024)
    except UploadRefused as e:
        logger.info("upload refused: %s", e)
        return UploadOutcome(shown, "refused", str(e))
    return _import_staged(path, shown, settings, db)


def retry_quarantined(entry: dict, settings: Settings, db: sqlite_utils.Database) -> UploadOutcome:
    """Read a quarantined file (a row of ``catalog.quarantined``) again, as an upload of its copy:
    a newer version of the box may read what an older one could not. Imported, it leaves
    quarantine; still unreadable, its reason is the new one."""
    shown = entry["file_name"]
    copy = quarantine.copy_path(settings, entry["sha256"], entry["file_name"])
    if not copy.is_file():
        return UploadOutcome(shown, "refused", _("The file is no longer in the quarantine folder."))
    folder = _staging_folder(settings, "retry-")
    name = Path(entry["file_name"]).name
    path = folder / (name if name and not name.startswith(".") else "book.epub")
    try:
        shutil.copyfile(copy, path)
    except OSError as e:
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("cannot copy %s out of quarantine: %s", copy, e)
        return UploadOutcome(shown, "refused", _("The file cannot be copied out of the quarantine folder (%(detail)s).",
                                                 detail=e.strerror or str(e)))
    return _import_staged(path, shown, settings, db)


def _staging_folder(settings: Settings, prefix: str) -> Path:
    """A fresh folder of staging/uploads for one file (removed at the server's start if left)."""
    base = uploads_dir(settings)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _import_staged(path: Path, shown: str, settings: Settings, db: sqlite_utils.Database) -> UploadOutcome:
    """Check and import a file staged in a folder of its own, which is removed afterwards."""
    # Imported here, not at the top: a server that only lends books never loads the EPUB reader.
    from appliance.books.importer import Importer, ImportReport

    try:
        check_epub_archive(path)
        report = ImportReport()
        Importer(settings, db, None).import_file(path, report)
    except UploadRefused as e:
        logger.info("upload refused: %s", e)
        return UploadOutcome(shown, "refused", str(e))
    except NotEnoughDisk:
        return UploadOutcome(shown, "refused", _("There is not enough free disk to add this book: %(mb)d MB must "
                                                 "stay free.", mb=settings.disk_reserve_mb))
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)
    if report.imported:
        warnings = tuple(w for _f, w in report.warnings)
        return UploadOutcome(shown, "imported", "", report.imported[0][1], warnings)
    if report.duplicates:
        return UploadOutcome(shown, "duplicate", _("This book is in the catalog already."), report.duplicates[0][1])
    reason = report.quarantined[0][1] if report.quarantined else say(N_("unknown"))
    return UploadOutcome(shown, "quarantined", reason)


def import_uploads(files: list[FileStorage], settings: Settings, db: sqlite_utils.Database) -> list[UploadOutcome]:
    files = [f for f in files if f and (f.filename or "").strip()]
    if len(files) > MAX_FILES_PER_UPLOAD:
        return [UploadOutcome(ngettext("%(num)d file", "%(num)d files", len(files)), "refused",
                              _("At most %(n)d files can be uploaded at once.", n=MAX_FILES_PER_UPLOAD))]
    outcomes = []
    for storage in files:
        outcomes.append(import_upload(storage, settings, db))
        storage.close()
    return outcomes

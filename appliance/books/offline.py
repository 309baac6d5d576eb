"""One self-contained HTML file of a whole book, for phones without a reader app.

Everything is inside the file: the chapters (sanitized like the reader's pages), the pictures as
``data:`` URIs and a small style sheet. Nothing is loaded from anywhere, so the file opens later
without the Wi-Fi. The file stays within its size cap: pictures are dropped once they would not fit
(text comes first), and chapters stop, with a note, at the first one that would not fit.

Each file is made once and kept in ``cache/offline/`` of the data folder (derived data, like the
search index), so it is sent as a file: with an ETag, and in ranges, which lets a phone's download
manager go on with a download the Wi-Fi cut instead of starting again; making one took up to 0.2 s
of the server's interpreter for a 13 MB file. The oldest files go once the folder holds more than
``CACHE_MAX_BYTES``; nothing is kept when that would eat into the disk reserve. One request at a time
makes a book's file (a lock file beside it, seen by every process of the box); the others wait for it.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.metadata
import mimetypes
import os
from pathlib import Path

from appliance.books import chapterhtml as bookhtml
from appliance.books.container import MAX_CHAPTER_BYTES, EpubUnreadable, read_member
from appliance.storage.atomic import atomic_write_bytes, free_bytes
from appliance.storage.locks import FileLock

CACHE_MAX_BYTES = 256 * 1024 * 1024
PICTURES_LEAVE = 64 * 1024  # room pictures leave for text
BUILD_WAIT_SECONDS = 60  # how long a request waits while another makes the same file

STYLE = """
body{margin:0 auto;max-width:40rem;padding:1rem;font:1.1rem/1.6 Georgia,'Noto Serif',serif;color:#1b1b1b;
background:#fffdf8}
img{max-width:100%;height:auto}
nav ol{padding-inline-start:1.2rem}
section{border-top:1px solid #ddd;margin-top:2rem}
.note{background:#fff3cd;padding:.5rem}
@media (prefers-color-scheme:dark){body{background:#161616;color:#e8e6e1}a{color:#8fd1b0}}
"""


TOO_LONG = (b'<p class="note">The rest of this book is too long for one file; '
            b'download the EPUB to read it all.</p>')


def build_offline_html(book: dict, epub: Path, max_bytes: int) -> bytes:
    """The file, at most ``max_bytes`` (the EPUB's zip is opened once, see ``read_member``)."""
    positions = {}
    for c in book["chapters"]:
        positions.setdefault(c["href"], c["position"])
        positions.setdefault(c["href"].lower(), c["position"])
    language = (book.get("language") or "und").split("-")[0]
    direction = "rtl" if language in bookhtml.RTL_LANGUAGES else "ltr"
    title = html.escape(book["title"])
    authors = html.escape(", ".join(book.get("authors") or []))
    toc = "".join(f'<li><a href="#chapter-{c["position"]}">{html.escape(c["title"] or str(c["position"] + 1))}</a></li>'
                  for c in book["chapters"])
    head = (f'<!doctype html>\n<html lang="{html.escape(book.get("language") or "und")}" dir="{direction}"><head>'
            f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{title}</title><style>{STYLE}</style></head><body>'
            f'<header><h1>{title}</h1><p>{authors}</p>').encode()
    nav = f'<nav><ol>{toc}</ol></nav></header>'.encode()
    tail = b"</body></html>\n"
    room = [max_bytes - len(head) - len(nav) - len(tail) - len(TOO_LONG) - 200]  # 200: the note on pictures
    dropped = [0]
    images: dict[str, str | None] = {}
    sections: list[bytes] = []

    def picture(path: str) -> str | None:
        if path not in images:
            kind = mimetypes.guess_type(path)[0]
            try:
                data = read_member(epub, path, limit=max_bytes) \
                    if kind and kind.startswith("image/") and kind != "image/svg+xml" else None
            except (KeyError, EpubUnreadable):  # missing, damaged, or larger than the whole file may be
                data = None
            images[path] = f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}" if data else None
        uri = images[path]
        if uri and len(uri) > room[0] - PICTURES_LEAVE:
            uri, dropped[0] = None, dropped[0] + 1
        if uri:
            room[0] -= len(uri)  # each time it is in the file
        return uri

    def chapter_link(path: str) -> str | None:
        pos = positions.get(path, positions.get(path.lower()))
        return f"#chapter-{pos}" if pos is not None else None

    for chapter in book["chapters"]:
        try:
            raw = read_member(epub, chapter["href"], limit=MAX_CHAPTER_BYTES)
        except (KeyError, EpubUnreadable):
            continue
        before = room[0]
        body = bookhtml.clean_chapter(bookhtml.chapter_body(raw), base_href=chapter["href"], picture_url=picture,
                                      chapter_url=chapter_link, allow_data_images=True)
        section = f'<section id="chapter-{chapter["position"]}">{body}</section>'.encode()
        text = len(section) - (before - room[0])  # its pictures are counted already
        if text > room[0]:
            sections.append(TOO_LONG)
            break
        room[0] -= text
        sections.append(section)
    note = (f'<p class="note">{dropped[0]} pictures were left out to keep this file small.</p>'.encode()
            if dropped[0] else b"")
    return b"".join((head, note, nav, *sections, tail))


@functools.cache
def _maker() -> str:
    """The code that makes the files (this module, the sanitizer and its library): a box given new
    software (a sanitizer mended) makes its files again instead of sending the old ones."""
    digest = hashlib.sha256(importlib.metadata.version("nh3").encode())
    for module in (__file__, bookhtml.__file__):
        digest.update(Path(module).read_bytes())
    return digest.hexdigest()


def offline_key(book: dict, max_bytes: int) -> str:
    """What the file of ``book`` depends on: its EPUB, its catalog entry's version (an edited title
    or chapter list), the chapters' names as given (an untitled one is named in the reader's
    language), the size cap and the code that makes it. Also the file's ETag."""
    titles = hashlib.sha256("\x1f".join(c["title"] or "" for c in book["chapters"]).encode("utf-8")).hexdigest()
    raw = f"{book['sha256']}:{book['updated_seq']}:{max_bytes}:{titles}:{_maker()}"
    return hashlib.sha256(raw.encode("ascii")).hexdigest()[:32]


class OfflineBusy(Exception):
    """Another request has been making the same file for BUILD_WAIT_SECONDS."""


def offline_file(book: dict, epub: Path, max_bytes: int, key: str, cache: Path, reserve_bytes: int) -> Path | bytes:
    """The offline file of ``book`` (``offline_key(book, max_bytes)`` is ``key``): its path in
    ``cache`` (made now if it was not there), or the file's bytes when keeping it would leave less
    than ``reserve_bytes`` free. Raises ``OfflineBusy``."""
    path = cache / f"{key}.html"
    if _sent(path):
        return path
    cache.mkdir(parents=True, exist_ok=True)
    lock_path = cache / f"{key}.lock"
    lock = FileLock(lock_path)
    if not lock.acquire(timeout=BUILD_WAIT_SECONDS):
        raise OfflineBusy(key)
    try:
        if _sent(path):  # made while this request waited
            return path
        data = build_offline_html(book, epub, max_bytes)
        if free_bytes(cache) - len(data) < reserve_bytes:
            return data
        atomic_write_bytes(path, data)
    finally:
        lock_path.unlink(missing_ok=True)
        lock.release()
    _prune(cache, keep=path)
    return path


def _sent(path: Path) -> bool:
    """Whether the file is there (marked as sent now: the most recently sent stay longest)."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False


def _prune(cache: Path, keep: Path) -> None:
    """Delete the least recently sent files while the folder holds more than CACHE_MAX_BYTES, and
    what a write cut by a power failure left."""
    files = []
    stale = os.path.getmtime(keep) - 3600  # a temp file older than this is no other process's write now
    for entry in os.scandir(cache):
        try:
            info = entry.stat()
        except FileNotFoundError:  # another process pruned it
            continue
        if entry.name.endswith((".tmp", ".lock")):
            if info.st_mtime < stale:
                Path(entry.path).unlink(missing_ok=True)
            continue
        files.append((info.st_mtime, info.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    for _mtime, size, name in sorted(files):
        if total <= CACHE_MAX_BYTES:
            break
        if name != str(keep):
            Path(name).unlink(missing_ok=True)
            total -= size

"""The zip container of an EPUB: opening the archive safely, looking members up, reading them with caps.

Real files store names with backslashes, percent-encoding or the wrong letter case,
and some are zip bombs. Every member is read through ``_Archive``, which looks names
up leniently and caps sizes, so a zip bomb is refused instead of filling the memory.
``read_member`` reads one file of a book for the reader and the offline copy, from an archive kept
open for the next request (opening one reads its whole directory: 0.5 s of CPU for 65,000 entries).
A book with more than ``MAX_ZIP_ENTRIES`` entries is not imported.
"""
from __future__ import annotations

import functools
import posixpath
import re
import unicodedata
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote

from appliance.messages import N_, SaidError, say_plural

__all__ = ["EpubUnreadable", "normalize_href", "read_member"]

MB = 1024 * 1024
MAX_MEMBER_BYTES = 64 * MB  # one zip member, decompressed
MAX_CHAPTER_BYTES = 4 * MB  # one chapter document, decompressed (the largest real one seen was 2 MB)
MAX_BOOK_READ_BYTES = 256 * MB  # everything read from one book
MAX_ARCHIVE_BYTES = 1024 * MB  # the whole archive as declared by its directory
MAX_RATIO = 100  # decompressed / compressed, checked for members above RATIO_CHECKED_ABOVE
RATIO_CHECKED_ABOVE = 1 * MB
MAX_ZIP_ENTRIES = 10_000  # entries in one book's zip (the largest real book seen had 2,020)
OPEN_ARCHIVES = 8  # archives kept open for read_member, per process
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class EpubUnreadable(SaidError):
    """The file cannot be imported; ``e.message`` says why in one line."""


class _MemberUnreadable(SaidError):
    """One zip member cannot be read (damaged, encrypted, unsupported compression)."""


class _MemberTooLarge(_MemberUnreadable):
    """One zip member is larger than this reader accepts."""


def normalize_href(href: str, base: str = "") -> str:
    """A zip member path from an href: forward slashes, no fragment, percent-decoded, NFC, no dot segments.

    ``base`` is the folder the href is relative to (e.g. ``"OEBPS"``).
    """
    path = href.replace("\\", "/").split("#", 1)[0]
    return _clean_path(posixpath.join(base, unquote(path)))


def _clean_path(name: str) -> str:
    parts: list[str] = []
    for segment in unicodedata.normalize("NFC", name.replace("\\", "/")).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if parts:
                parts.pop()
            continue
        parts.append(segment)
    return "/".join(parts)


def _size_mb(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= 10 * MB else f"{n / MB:.1f} MB"


class _Archive:
    """A zip file with lenient name lookup and size caps on everything read from it (an import also
    caps the number of entries, ``max_entries``, and the bytes read from the whole book, ``max_read``)."""

    def __init__(self, zf: zipfile.ZipFile, warn, max_entries: int | None = None, max_read: int | None = None) -> None:
        if max_entries is not None and len(zf.filelist) > max_entries:
            raise EpubUnreadable(N_("the zip archive holds %(num)d entries, more than the %(limit)d one book may have"),
                                 num=len(zf.filelist), limit=max_entries)
        self.zf = zf
        self.max_read = max_read
        self.read_total = 0
        self.by_name: dict[str, zipfile.ZipInfo] = {}
        self.by_folded: dict[str, list[str]] = defaultdict(list)
        declared = 0
        seen: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
        for info in zf.infolist():
            if info.filename.endswith("/"):  # a folder (ZipInfo.is_dir fails on an empty name)
                continue
            name = _clean_path(info.filename)
            if not name:
                continue
            declared += info.file_size
            if info.file_size > RATIO_CHECKED_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise EpubUnreadable(N_("zip entry %(name)s would expand %(ratio)d times (to %(size)s): "
                                        "the file looks like a zip bomb"),
                                     name=name, ratio=ratio, size=_size_mb(info.file_size))
            seen[name].append(info)
        if declared > MAX_ARCHIVE_BYTES:
            raise EpubUnreadable(N_("the archive would expand to %(size)s, more than the %(limit)s one book may take"),
                                 size=_size_mb(declared), limit=_size_mb(MAX_ARCHIVE_BYTES))
        for name, infos in seen.items():
            if len(infos) > 1:
                if len({(i.CRC, i.file_size) for i in infos}) > 1:
                    raise EpubUnreadable(N_("zip entry names are duplicated with different contents: %(name)s"), name=name)
                warn(say_plural("zip entry %(name)s is stored %(num)d times", "zip entry %(name)s is stored %(num)d times",
                                len(infos), name=name))
            self.by_name[name] = infos[0]
            self.by_folded[name.casefold()].append(name)
        for names in self.by_folded.values():
            if len(names) > 1:
                warn(N_("zip entry names differ only in letter case: %(names)s"), names=", ".join(sorted(names)))

    def names(self) -> list[str]:
        return list(self.by_name)

    def find(self, name: str) -> str | None:
        """The stored name matching a cleaned path exactly, or else by letter case when unambiguous."""
        if name in self.by_name:
            return name
        folded = self.by_folded.get(name.casefold(), [])
        return folded[0] if len(folded) == 1 else None

    def resolve(self, href: str, base: str = "") -> str | None:
        """The member an href points to, trying the readings real files need; None if absent."""
        raw = href.strip().replace("\\", "/")
        if not raw or _REMOTE.match(raw):
            return None
        without_fragment = raw.split("#", 1)[0]
        for candidate in (without_fragment, raw):  # a literal '#' in a file name comes last
            for path in (unquote(candidate), candidate):
                found = self.find(_clean_path(posixpath.join(base, path)))
                if found:
                    return found
        return None

    def size(self, name: str) -> int:
        return self.by_name[name].file_size

    def read(self, name: str, limit: int | None = None) -> bytes:
        limit = MAX_MEMBER_BYTES if limit is None else min(limit, MAX_MEMBER_BYTES)
        info = self.by_name[name]
        if info.file_size > limit:
            raise _MemberTooLarge(N_("%(name)s is too large (%(size)s; the limit is %(limit)s)"),
                                  name=name, size=_size_mb(info.file_size), limit=_size_mb(limit))
        if self.max_read is not None and self.read_total + info.file_size > self.max_read:
            raise EpubUnreadable(N_("the book holds more than %(limit)s of text and images to read; "
                                    "it is too large to import"), limit=_size_mb(self.max_read))
        try:
            with self.zf.open(info) as member:
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
            raise _MemberUnreadable(N_("%(name)s is damaged in the zip (%(detail)s)"), name=name, detail=str(e)) from e
        except RuntimeError as e:  # encrypted member
            raise _MemberUnreadable(N_("%(name)s is encrypted in the zip"), name=name) from e
        except NotImplementedError as e:
            raise _MemberUnreadable(N_("%(name)s uses a compression method this reader does not know"), name=name) from e
        self.read_total += len(data)
        return data


def _open_zip(path: Path, size: int) -> zipfile.ZipFile:
    if size == 0:
        raise EpubUnreadable(N_("the file is empty"))
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise EpubUnreadable(N_("not a zip archive (or the file is cut short)")) from e
    except (zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError) as e:
        raise EpubUnreadable(N_("the zip archive cannot be read: %(detail)s"), detail=str(e)) from e


def _check_mimetype(archive: _Archive, warn) -> None:
    name = archive.find("mimetype")
    if name is None:
        warn(N_("the mimetype file is missing"))
        return
    try:
        value = archive.read(name, limit=1024).decode("ascii", "replace").strip()
    except _MemberUnreadable as e:
        warn(e.message)
        return
    if value != "application/epub+zip":
        warn(N_("the mimetype file says %(value)r instead of application/epub+zip"), value=value[:60])


def read_member(path: Path, href: str, limit: int | None = None) -> bytes:
    """Raw bytes of one file inside an EPUB, found by its normalized href (at most ``limit``).

    Backslashes, letter case and percent-encoding in ``href`` are tolerated. Raises
    ``KeyError`` when the archive has no such file and ``EpubUnreadable`` when the
    archive or the member cannot be read safely.
    """
    try:
        found = Path(path).stat()
    except OSError as e:
        raise EpubUnreadable(N_("cannot read the file: %(detail)s"), detail=str(e.strerror or e)) from e
    archive = _open_archive(str(path), (found.st_ino, found.st_size, found.st_mtime_ns))
    name = archive.resolve(href)
    if name is None:
        raise KeyError(href)
    try:
        return archive.read(name, limit)
    except _MemberUnreadable as e:
        raise EpubUnreadable(e.message) from e


@functools.lru_cache(maxsize=OPEN_ARCHIVES)
def _open_archive(path: str, identity: tuple[int, int, int]) -> _Archive:
    """The archive at ``path`` as it is now (``identity``: its inode, size and time), kept open with its
    directory for the next read (zipfile reads members of one archive from several threads safely).
    Books imported before MAX_ZIP_ENTRIES stay readable; an archive dropped from here is closed when
    the last read of it ends."""
    return _Archive(_open_zip(Path(path), identity[1]), lambda *message, **params: None)

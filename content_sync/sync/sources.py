"""Where a box reads release trees from: a folder (USB stick, mounted disk) or an HTTP(S) server.

Both give the same two operations: ``read(relpath)`` for the small files (manifests, signatures,
``latest``) and ``fetch_blob(sha256, size, dest)`` which streams one blob into ``dest``, never
writing more than ``size`` bytes, and returns the SHA-256 of what it wrote. A source is not trusted:
everything it returns is checked by the caller (signatures, sizes, hashes).
"""
from __future__ import annotations

import errno
import hashlib
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from appliance.messages import N_, Message, SaidError, say
from appliance.storage.atomic import open_regular

CHUNK = 256 * 1024
SMALL_FILE_LIMIT = 64 * 1024 * 1024
HTTP_TIMEOUT = 60


class SourceError(SaidError):
    """The source cannot give a file (missing, unreachable)."""


def link_failure(error: BaseException) -> Message | str:
    """Why a connection failed, for a librarian: the usual failures of a village's link named (in
    words a page translates), anything else as Python says it."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, socket.gaierror):
        return say(N_("its name cannot be looked up from here"))
    if isinstance(reason, ConnectionRefusedError):
        return say(N_("the connection was refused"))
    if isinstance(reason, TimeoutError):
        return say(N_("no answer in time"))
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return say(N_("the connection was cut"))
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
        return say(N_("no network leads there"))
    return str(reason)


class BlobTooLarge(SourceError):
    """The source sent more bytes than the manifest declares for a blob."""


class BlobTruncated(SourceError):
    """The source sent fewer bytes than the manifest declares for a blob."""


class ReleaseSource:
    """Base of the sources; counts the bytes it hands over (for budgets and benchmarks)."""

    description = "source"

    def __init__(self) -> None:
        self.bytes_read = 0

    def read(self, relpath: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        raise NotImplementedError

    def open_blob(self, sha256: str, size: int):
        """A binary stream of the blob (closed by the caller)."""
        raise NotImplementedError

    def fetch_blob(self, sha256: str, size: int, dest: Path) -> str:
        """Stream the blob into ``dest`` (fsynced); returns the SHA-256 of the bytes written."""
        digest = hashlib.sha256()
        written = 0
        relpath = f"blobs/sha256/{sha256}"
        with self.open_blob(sha256, size) as stream, open(dest, "wb") as out:
            while True:
                chunk = stream.read(min(CHUNK, size + 1 - written))
                if not chunk:
                    break
                written += len(chunk)
                self.bytes_read += len(chunk)
                if written > size:
                    raise BlobTooLarge(N_("%(where)s is larger than the %(size)d bytes the manifest declares"),
                                       where=self.where(relpath), size=size)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if written < size:
            raise BlobTruncated(N_("%(where)s has %(written)d bytes, fewer than the %(size)d the manifest declares"),
                                where=self.where(relpath), written=written, size=size)
        return digest.hexdigest()

    def where(self, relpath: str) -> str:
        return f"{self.description}/{relpath}"


class FolderSource(ReleaseSource):
    def __init__(self, root: Path):
        super().__init__()
        self.root = Path(root)
        self.description = str(self.root)

    def _path(self, relpath: str) -> Path:
        path = (self.root / relpath).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise SourceError(N_("%(path)r is outside %(root)s"), path=relpath, root=str(self.root))
        return path

    def read(self, relpath: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        try:
            with open_regular(self._path(relpath)) as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise SourceError(N_("cannot read %(where)s: %(detail)s"), where=self.where(relpath),
                              detail=str(e.strerror or e)) from None
        if len(data) > limit:
            raise SourceError(N_("%(where)s is larger than %(limit)d bytes"), where=self.where(relpath), limit=limit)
        self.bytes_read += len(data)
        return data

    def open_blob(self, sha256: str, size: int):
        try:
            return open_regular(self._path(f"blobs/sha256/{sha256}"))
        except OSError as e:
            raise SourceError(N_("cannot read %(where)s: %(detail)s"), where=self.where("blobs/sha256/" + sha256),
                              detail=str(e.strerror or e)) from None


class HttpSource(ReleaseSource):
    def __init__(self, base_url: str, timeout: float = HTTP_TIMEOUT):
        super().__init__()
        self.base = base_url.rstrip("/") + "/"
        self.description = base_url.rstrip("/")
        self.timeout = timeout

    def _open(self, relpath: str):
        url = urllib.parse.urljoin(self.base, urllib.parse.quote(relpath))
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "library-sync"}),
                                          timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise SourceError(N_("%(where)s answered %(code)d %(reason)s"), where=self.where(relpath), code=e.code,
                              reason=str(e.reason)) from None
        except (urllib.error.URLError, OSError) as e:
            raise SourceError(N_("cannot reach %(where)s: %(detail)s"), where=self.where(relpath),
                              detail=link_failure(e)) from None

    def read(self, relpath: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        with self._open(relpath) as answer:
            try:
                data = answer.read(limit + 1)
            except OSError as e:
                raise SourceError(N_("the connection broke while reading %(where)s: %(detail)s"),
                                  where=self.where(relpath), detail=str(e)) from None
        if len(data) > limit:
            raise SourceError(N_("%(where)s is larger than %(limit)d bytes"), where=self.where(relpath), limit=limit)
        self.bytes_read += len(data)
        return data

    def open_blob(self, sha256: str, size: int):
        return self._open(f"blobs/sha256/{sha256}")


def source_for(location: str) -> ReleaseSource:
    """A source for a folder path or an http(s) URL."""
    if location.startswith(("http://", "https://")):
        return HttpSource(location)
    path = Path(location).expanduser()
    if not path.is_dir():
        raise SourceError(N_("%(location)s is not a folder or an http(s) address"), location=location)
    return FolderSource(path)

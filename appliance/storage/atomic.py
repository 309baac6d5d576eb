"""Crash-safe file writes: temp file, fsync, rename, fsync the folder."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from appliance.messages import SaidError


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file inside ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_chunks(path: Path, chunks: Iterable[bytes], mode: int = 0o644) -> int:
    """Write ``chunks`` to ``path`` so that a reader sees the old file or the whole new one.

    Returns the number of bytes written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return written


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    atomic_write_chunks(path, [data], mode=mode)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    atomic_write_chunks(path, [text.encode("utf-8")], mode=mode)


class NotEnoughDisk(SaidError):
    """Writing this would eat into the disk reserve (``LIBRARY_DISK_RESERVE_MB``), which stays free for
    the catalog, the index and the system: an import, an upload or a release is refused whole."""


def free_bytes(folder: Path) -> int:
    """Bytes available to an unprivileged writer on the file system holding ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


class NotARegularFile(OSError):
    """A path that should name a file names a FIFO, a device, a folder or a link out of bounds."""


def open_regular(path: Path, *, follow_links: bool = True):
    """``open(path, "rb")`` for a regular file only: a FIFO or /dev/zero would hang or never end a
    read, and a link to /etc/passwd or a secret key must not be read as a book. The file is opened
    without blocking (a FIFO's open waits for a writer), checked, then read normally."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise NotARegularFile(e.errno, "a symbolic link, not a file", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise

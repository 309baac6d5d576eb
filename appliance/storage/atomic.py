"""Crash-safe file writes: temp file, fsync, rename, fsync the folder."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


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


def free_bytes(folder: Path) -> int:
    """Bytes available to an unprivileged writer on the file system holding ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize

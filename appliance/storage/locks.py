"""A lock that other processes of the box see: an flock on a file (the kernel drops it when the
process ends, however it ends)."""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path


class FileLock:
    """An flock on a file, held until release() or the end of the process. Two locks of one
    process on the same file exclude each other too (each opens the file anew)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(fd)
                    if e.errno in (errno.EAGAIN, errno.EACCES):
                        return False
                    raise
                time.sleep(0.1)

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

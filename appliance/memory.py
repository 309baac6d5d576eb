"""Keeping the server's memory small on a 1 GB box (glibc's allocator, through ctypes).

By default glibc gives each thread that allocates its own arena, and memory freed in one arena
is not used by another; after a burst of requests (chapters of big books parsed by several
threads at once) the server kept tens of MB it no longer used. ``limit_arenas`` caps the
arenas as MALLOC_ARENA_MAX does (it must run before threads start) and fixes the size from
which a block is mapped on its own, and handed back as soon as it is freed (glibc raises that
size, up to 32 MB, each time such a block is freed, so that later big blocks, such as a
decompressed chapter or a file being sent, stay in the heap; fixed at 128 KB, the box's RSS 12 s
after a load of 20 and 50 phones was 83 MB instead of 88). ``MemoryTrimmer`` hands freed pages
back to the system every few seconds (malloc_trim). Elsewhere than glibc these do nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024
TRIM_SECONDS = 10.0


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas)
                and libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold))


class MemoryTrimmer:
    def __init__(self, seconds: float = TRIM_SECONDS):
        self.seconds = seconds
        self._libc = _libc()
        self._last = time.monotonic()

    def tick(self) -> None:
        """Call often; trims at most once every ``seconds``."""
        now = time.monotonic()
        if self._libc is not None and now - self._last >= self.seconds:
            self._last = now
            self._libc.malloc_trim(0)

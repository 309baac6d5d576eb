"""When each of the server's processes last received a request, on a board they share."""
from __future__ import annotations

import mmap
import os
import struct
import time

_SLOT = struct.Struct("d")


class Board:
    """When each of the server's processes last received a request (``time.monotonic``, which
    every process of the machine reads from the same clock): one slot each, in shared memory."""

    def __init__(self, memory: mmap.mmap, slots: int, fd: int | None = None):
        self._memory = memory
        self.slots = slots
        self.fd = fd

    @classmethod
    def private(cls) -> Board:
        """One slot, in this process's memory only (a server of one process), noted now."""
        return cls(mmap.mmap(-1, _SLOT.size), 1)._noted_now()

    @classmethod
    def shared(cls, slots: int) -> Board:
        """A board, noted now, that processes started with ``pass_fds=[board.fd]`` can ``attach`` to."""
        fd = os.memfd_create("library-board", 0)
        os.ftruncate(fd, _SLOT.size * slots)
        return cls(mmap.mmap(fd, _SLOT.size * slots), slots, fd)._noted_now()

    @classmethod
    def attach(cls, fd: int, slots: int) -> Board:
        return cls(mmap.mmap(fd, _SLOT.size * slots), slots, fd)

    def note(self, slot: int, at: float | None = None) -> None:
        _SLOT.pack_into(self._memory, slot * _SLOT.size, time.monotonic() if at is None else at)

    def _noted_now(self) -> Board:
        now = time.monotonic()
        for slot in range(self.slots):
            self.note(slot, now)
        return self

    def _read(self, slot: int) -> float:
        return _SLOT.unpack_from(self._memory, slot * _SLOT.size)[0]

    def latest(self) -> float:
        return max(self._read(i) for i in range(self.slots))

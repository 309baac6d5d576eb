"""A map of the most recently used values, bounded by their total size: what the box keeps in memory
to answer again (whole pages, rendered chapters, postings, a searcher's stored fields) must fit beside
everything else in 1 GB of RAM.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["SizedLRU"]

V = TypeVar("V")


class SizedLRU(Generic[V]):
    """Values with their sizes, the least recently used dropped first while there are more than
    ``count`` or their sizes add up to more than ``max_bytes``. A value larger than a quarter of
    ``max_bytes`` is not kept: it would push out many others. Safe to share between threads."""

    def __init__(self, max_bytes: int, count: int | None = None):
        self.max_bytes = max_bytes
        self.count = count
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Hashable, value: V, size: int) -> bool:
        """Keep ``value``; False when it is too large to keep."""
        if size > self.max_bytes // 4:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or (self.count is not None and len(self._items) > self.count):
                self._bytes -= self._items.popitem(last=False)[1][1]
        return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

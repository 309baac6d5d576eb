"""Pages that every reader asks for, kept rendered for a few seconds.

Twenty phones opening the home page or a reader app refreshing the OPDS root
would otherwise each pay for the same queries and the same template. A page is
kept under a key naming everything it depends on (language, the reader's
"continue reading" place, the catalog's change counter) and for at most ``ttl``
seconds of the monotonic clock, so what changes without a key change (most read
this month, vans nearby) is at most that old.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class PageCache(Generic[T]):
    def __init__(self, ttl: float, size: int = 256):
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The kept value for ``key``, or a fresh one from ``make()`` (kept for next time)."""
        now = time.monotonic()
        with self._lock:
            found = self._items.get(key)
            if found is not None and now - found[0] < self.ttl:
                self._items.move_to_end(key)
                return found[1]
        value = make()
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

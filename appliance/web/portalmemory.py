"""Which phones have been through the captive portal lately: by address, in memory only."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class PortalMemory:
    """Which phones (by IP address) have seen the welcome page, for a while. In memory only."""

    def __init__(self, minutes: int, clock: Callable[[], float] = time.monotonic, limit: int = 10_000):
        self.seconds = minutes * 60
        self.clock = clock
        self.limit = limit
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def welcome(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            self._until.pop(address, None)
            self._until[address] = now + self.seconds
            while len(self._until) > self.limit:
                self._until.popitem(last=False)

    def has_seen(self, address: str) -> bool:
        with self._lock:
            until = self._until.get(address)
            if until is None:
                return False
            if self.clock() >= until:
                del self._until[address]
                return False
            return True

    def __len__(self) -> int:
        with self._lock:
            self._forget_expired(self.clock())
            return len(self._until)

    def _forget_expired(self, now: float) -> None:
        # Entries are kept in the order they were last welcomed, so the oldest expire first.
        while self._until:
            address, until = next(iter(self._until.items()))
            if until > now:
                break
            del self._until[address]

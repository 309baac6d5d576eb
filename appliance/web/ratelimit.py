"""Counting wrong passwords per client address, in memory only.

Addresses are kept in this process's memory for at most one window; they are never written to
disk, logged or sent anywhere. After ``max_failures`` wrong answers within ``window_seconds`` a
client is refused until the oldest of them is a window old.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureLimiter:
    def __init__(self, max_failures: int = 5, window_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000):
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def wait_seconds(self, client: str) -> float:
        """0 when the client may try; otherwise how long until it may try again."""
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if times is None or len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[0] + self.window - now)

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
            self._failures.move_to_end(client)
            times.append(now)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def __len__(self) -> int:
        with self._lock:
            now = self.clock()
            for client in list(self._failures):
                self._recent(client, now)
            return len(self._failures)

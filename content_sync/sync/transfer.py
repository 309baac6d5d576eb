"""Downloads over bad links: resumable, verified, metered.

A blob is fetched with one HTTP request for everything still missing (``Range: bytes=<offset>-``),
written to ``<dest>.part`` and fsynced every ``chunk`` bytes; after each fsync the offset is recorded
in ``<dest>.progress`` (atomically). When the connection drops, the next attempt truncates the part
to the recorded offset and asks for the rest, so a cut costs at most one chunk. The whole blob is
hashed before the caller may use it. Few round trips: one request per attempt, no HEAD, no per-chunk
requests (at 600 ms a round trip they would cost more than the data).

``is_retryable`` is the one place that decides what is worth trying again; ``backoff`` gives the
wait (exponential, with jitter, capped). ``LinkPolicy`` says when the link may be used: the allowed
hours of the day, the daily byte budget and the maximum rate; its clock is injectable.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from appliance.messages import N_
from appliance.storage.atomic import atomic_write_text
from appliance.storage.locks import FileLock
from content_sync.sync.sources import BlobTooLarge, BlobTruncated, ReleaseSource, SourceError

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
TIMEOUT = 30.0
MAX_ATTEMPTS = 50
STATE_LOCK_SECONDS = 5.0  # another process adding to the day's count takes a moment


class LinkClosed(SourceError):
    """The link may not be used now (outside the allowed hours, or the day's budget is spent)."""


class HttpStatusError(SourceError):
    def __init__(self, status: int, text: str, **params):
        super().__init__(text, **params)
        self.status = status


def is_retryable(error: BaseException) -> bool:
    """Worth trying again later: the link failed, not the data or the request."""
    if isinstance(error, HttpStatusError):
        return error.status >= 500 or error.status in (408, 429)
    if isinstance(error, (BlobTooLarge, BlobTruncated, LinkClosed)):
        return False
    return isinstance(error, (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException,
                              urllib.error.URLError, OSError))


def backoff(attempt: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt`` (1, 2, ...): doubling, capped, with full jitter."""
    rng = rng or random.Random()
    return rng.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1))


def parse_hours(text: str) -> tuple[int, int] | None:
    """``"22-6"`` -> (22, 6): allowed from 22:00 to 06:00. Empty: any hour."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        start, end = (int(part) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"sync hours must look like 22-6, not {text!r}") from None
    if not (0 <= start <= 23 and 0 <= end <= 24):
        raise ValueError(f"sync hours must be between 0 and 24, not {text!r}")
    return start, end


@dataclass
class LinkPolicy:
    """When and how much the link may be used. ``clock`` returns Unix seconds (the box's time)."""

    budget_bytes_per_day: int = 0  # 0: no limit
    hours: tuple[int, int] | None = None  # (start, end) hours of the day, UTC; None: any time
    max_bytes_per_second: int = 0  # 0: no limit
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    used: dict[str, int] = field(default_factory=dict)  # day -> bytes
    state_file: Path | None = None

    def _load(self) -> dict[str, int]:
        """What the state file says was spent (the agent's service, a sync a librarian started and
        a van's visit are processes of their own, sharing the budget through it)."""
        try:
            return {k: int(v) for k, v in json.loads(self.state_file.read_text()).items()}
        except (ValueError, OSError, AttributeError):
            return {}

    def day(self) -> str:
        return datetime.fromtimestamp(self.clock(), tz=UTC).strftime("%Y-%m-%d")

    def used_today(self) -> int:
        if self.state_file is not None:
            self.used = self._load()
        return self.used.get(self.day(), 0)

    def hour_allowed(self) -> bool:
        if self.hours is None:
            return True
        hour = datetime.fromtimestamp(self.clock(), tz=UTC).hour
        start, end = self.hours
        return start <= hour < end if start < end else (hour >= start or hour < end)

    def check(self) -> None:
        self._check(self.used_today() if self.budget_bytes_per_day else 0)

    def _check(self, used: int) -> None:
        if not self.hour_allowed():
            raise LinkClosed(N_("the link may be used only between %(start)d:00 and %(end)d:00"),
                             start=self.hours[0], end=self.hours[1])
        if self.budget_bytes_per_day and used >= self.budget_bytes_per_day:
            raise LinkClosed(N_("today's budget of %(mb)d MB is spent"), mb=self.budget_bytes_per_day // (1024 * 1024))

    def allowance(self, want: int) -> int:
        """How many of ``want`` bytes may be read now (at least 1 while anything is left)."""
        used = self.used_today() if self.budget_bytes_per_day else 0  # read once for both
        self._check(used)
        if self.budget_bytes_per_day:
            return max(1, min(want, self.budget_bytes_per_day - used))
        return want

    def spent(self, n: int) -> None:
        day = self.day()
        if self.state_file is None:
            self.used = {day: self.used.get(day, 0) + n}  # older days are forgotten
            return
        lock = FileLock(self.state_file.with_name(self.state_file.name + ".lock"))
        locked = lock.acquire(STATE_LOCK_SECONDS)  # else counted anyway: better than not at all
        try:
            used = self._load()  # with what other processes spent since
            self.used = {day: used.get(day, 0) + n}
            atomic_write_text(self.state_file, json.dumps(self.used))
        finally:
            if locked:
                lock.release()


class _Throttle:
    def __init__(self, policy: LinkPolicy):
        self.policy = policy
        self.start = time.monotonic()
        self.count = 0

    def __call__(self, n: int) -> None:
        self.count += n
        rate = self.policy.max_bytes_per_second
        if rate:
            ahead = self.count / rate - (time.monotonic() - self.start)
            if ahead > 0:
                self.policy.sleep(ahead)


class Downloader:
    """Resumable, verified downloads from one base URL."""

    def __init__(self, base_url: str, policy: LinkPolicy | None = None, *, chunk: int = CHUNK,
                 timeout: float = TIMEOUT, max_attempts: int = MAX_ATTEMPTS, rng: random.Random | None = None):
        self.base = base_url.rstrip("/") + "/"
        self.policy = policy or LinkPolicy()
        self.chunk = chunk
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.rng = rng or random.Random()
        self.bytes_received = 0
        self.requests = 0
        self.cuts = 0

    def url(self, relpath: str) -> str:
        return urllib.parse.urljoin(self.base, urllib.parse.quote(relpath))

    def _open(self, relpath: str, offset: int = 0):
        headers = {"User-Agent": "library-sync"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        self.requests += 1
        try:
            answer = urllib.request.urlopen(urllib.request.Request(self.url(relpath), headers=headers),
                                            timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise HttpStatusError(e.code, N_("%(where)s answered %(code)d %(reason)s"), where=self.url(relpath),
                                  code=e.code, reason=str(e.reason)) from None
        return answer

    def _retrying(self, action: Callable[[int], object], what: str):
        """``action`` until it succeeds, or ``max_attempts`` tries in a row moved no data: a 10 MB
        book on a link cut every 100-200 kB needs 50-100 connections, each of which moves data."""
        attempt = 0
        failures = 0  # in a row without progress: a link that still moves data is retried at once
        while True:
            attempt += 1
            before = self.bytes_received
            try:
                return action(attempt)
            except Exception as e:
                progressed = self.bytes_received > before
                failures = 0 if progressed else failures + 1
                if not is_retryable(e) or failures >= self.max_attempts:
                    raise
                self.cuts += 1
                # Data was still flowing: reconnect at once. A link that gives nothing waits longer
                # each time, so nothing spins in a tight loop.
                wait = 0.0 if progressed else backoff(failures, base=0.2, cap=30.0, rng=self.rng)
                logger.info("%s: %s; trying again in %.1f s", what, e, wait)
                self.policy.sleep(wait)

    def get(self, relpath: str, limit: int) -> bytes:
        """A small file, whole (retried when the link fails)."""
        def once(_attempt: int) -> bytes:
            self.policy.check()
            with self._open(relpath) as answer:
                data = answer.read(limit + 1)
            if len(data) > limit:
                raise SourceError(N_("%(where)s is larger than %(limit)d bytes"), where=self.url(relpath), limit=limit)
            self.bytes_received += len(data)
            self.policy.spent(len(data))
            return data

        return self._retrying(once, relpath)

    def fetch(self, relpath: str, size: int, dest: Path) -> str:
        """Download ``relpath`` (``size`` bytes) into ``dest`` and return its SHA-256.

        ``dest`` is written through ``dest.part``; the part survives any failure so the next call
        continues it. Raises BlobTooLarge / BlobTruncated when the server disagrees with ``size``.
        """
        part = dest.with_name(dest.name + ".part")
        progress = dest.with_name(dest.name + ".progress")

        def once(_attempt: int) -> None:
            offset = _recorded_offset(part, progress)
            if offset > size:
                raise BlobTooLarge(N_("%(where)s is larger than the %(size)d bytes expected"),
                                   where=self.url(relpath), size=size)
            if offset == size:
                return
            self.policy.check()
            throttle = _Throttle(self.policy)
            with self._open(relpath, offset) as answer, open(part, "r+b" if offset else "wb") as out:
                if offset and answer.status != 206:  # a server without ranges sends it all again
                    logger.info("%s ignored the range request; starting over", self.url(relpath))
                    offset = 0
                out.seek(offset)
                out.truncate()
                unsynced = 0
                try:
                    while True:
                        want = self.policy.allowance(min(64 * 1024, size + 1 - offset))
                        block = answer.read(want)
                        if not block:
                            break
                        if offset + len(block) > size:
                            raise BlobTooLarge(N_("%(where)s is larger than the %(size)d bytes expected"),
                                               where=self.url(relpath), size=size)
                        out.write(block)
                        offset += len(block)
                        unsynced += len(block)
                        self.bytes_received += len(block)
                        self.policy.spent(len(block))
                        throttle(len(block))
                        if unsynced >= self.chunk:
                            _sync(out, progress, offset)
                            unsynced = 0
                finally:
                    # What arrived before a cut is intact (TCP checks it): keep it. A power cut
                    # instead loses at most the last unsynced chunk.
                    _sync(out, progress, offset)
            if offset < size:
                raise ConnectionResetError(f"the connection ended after {offset} of {size} bytes")

        self._retrying(once, relpath)
        digest = hashlib.sha256()
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
        os.replace(part, dest)
        progress.unlink(missing_ok=True)
        return digest.hexdigest()


def _sync(out, progress: Path, offset: int) -> None:
    out.flush()
    os.fsync(out.fileno())
    atomic_write_text(progress, str(offset))


def _recorded_offset(part: Path, progress: Path) -> int:
    """Bytes of ``part`` known to be on disk; the rest (unsynced when the power went) is cut off."""
    if not part.exists():
        progress.unlink(missing_ok=True)
        return 0
    try:
        recorded = int(progress.read_text().strip())
    except (OSError, ValueError):
        recorded = 0
    recorded = min(recorded, part.stat().st_size)
    with open(part, "r+b") as f:
        f.truncate(recorded)
    return recorded


class HttpReleaseSource(ReleaseSource):
    """A release tree over HTTP through a resumable ``Downloader`` (what the sync agent uses)."""

    def __init__(self, downloader: Downloader):
        super().__init__()
        self.downloader = downloader
        self.description = downloader.base.rstrip("/")

    def read(self, relpath: str, limit: int = 64 * 1024 * 1024) -> bytes:
        data = self.downloader.get(relpath, limit)
        self.bytes_read += len(data)
        return data

    def fetch_blob(self, sha256: str, size: int, dest: Path) -> str:
        before = self.downloader.bytes_received
        target = dest.with_name(dest.name + ".whole")
        try:
            digest = self.downloader.fetch(f"blobs/sha256/{sha256}", size, target)
        finally:
            self.bytes_read += self.downloader.bytes_received - before
        os.replace(target, dest)
        return digest

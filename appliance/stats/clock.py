"""The box's idea of the time: advisory, never moving backwards, marked uncertain until trusted.

A box has no real-time clock: after a power cut its system clock may say 1970, or whatever time it
saved at shutdown. So wall times on the box are advisory and used only for days in statistics,
never for ordering (counters do that). A time becomes *trusted* when the hub's signed answer or a
librarian (from a phone's clock on the admin page) gives it; it stays trusted until the next boot.

Stored in the catalog's ``kv`` table:

- ``clock_offset``: seconds to add to the system clock, from the last trusted time;
- ``clock_trusted_boot``: the boot (``/proc/sys/kernel/random/boot_id``) in which it was given;
- ``clock_last``: the latest box time handed out, so the box time never goes backwards;
- ``clock_source``: who gave the trusted time.

``now()`` is system time plus offset, but never earlier than ``clock_last``. Events recorded while
the time is uncertain keep their *monotonic* hour since boot, so once a trusted time arrives in the
same boot they can be dated exactly (``monotonic_to_wall``).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from appliance.storage.db import get_setting, put_setting

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
EARLIEST_PLAUSIBLE = 1_735_689_600  # 2025-01-01: a system clock before this is certainly wrong


def boot_id() -> str:
    try:
        return BOOT_ID_FILE.read_text().strip()
    except OSError:
        return "unknown-boot"


@dataclass(frozen=True)
class ClockStatus:
    now: float  # box time, seconds since the epoch
    trusted: bool
    source: str | None
    offset: float


class BoxClock:
    """Wall time for a box; ``wall`` and ``monotonic`` are injectable for tests."""

    def __init__(self, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 boot: Callable[[], str] = boot_id):
        self.wall = wall
        self.monotonic = monotonic
        self.boot = boot

    def status(self, db: sqlite_utils.Database) -> ClockStatus:
        offset = float(get_setting(db, "clock_offset", "0") or 0)
        trusted = get_setting(db, "clock_trusted_boot") == self.boot()
        if not trusted:
            offset = 0.0  # an offset from an earlier boot says nothing about this one
        last = float(get_setting(db, "clock_last", "0") or 0)
        now = max(self.wall() + offset, last)
        return ClockStatus(now, trusted, get_setting(db, "clock_source") if trusted else None, offset)

    def now(self, db: sqlite_utils.Database) -> ClockStatus:
        """The box time, remembered so that it never goes backwards."""
        status = self.status(db)
        put_setting(db, "clock_last", repr(status.now))
        return status

    def trust(self, db: sqlite_utils.Database, unix_seconds: float, source: str) -> None:
        """Take ``unix_seconds`` as the true time now (from the hub's signed answer or a librarian).

        The box time may jump forward; it never jumps back: a trusted time earlier than what the box
        has handed out already is taken as the offset, but ``now()`` stays at the last value until
        the clock passes it.
        """
        if unix_seconds < EARLIEST_PLAUSIBLE:
            raise ValueError("that time is before 2025; the device giving it has a wrong clock")
        with db.atomic():
            put_setting(db, "clock_offset", repr(unix_seconds - self.wall()))
            put_setting(db, "clock_trusted_boot", self.boot())
            put_setting(db, "clock_source", source[:80])
            put_setting(db, "clock_trusted_monotonic", repr(self.monotonic()))

    def monotonic_to_wall(self, db: sqlite_utils.Database, monotonic_seconds: float) -> float | None:
        """The trusted wall time of an instant of this boot given as ``time.monotonic()``; None if untrusted."""
        status = self.status(db)
        if not status.trusted:
            return None
        return self.wall() + status.offset - (self.monotonic() - monotonic_seconds)


DEFAULT_CLOCK = BoxClock()

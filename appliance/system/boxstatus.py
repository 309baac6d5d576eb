"""What the librarian's system page shows about the box: disk, temperature, power, releases.

Each reading says "not available" (None) rather than guessing when the box cannot tell.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from flask_babel import lazy_gettext

from appliance.settings import Settings
from appliance.storage.atomic import free_bytes

logger = logging.getLogger(__name__)

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
VCGENCMD = "vcgencmd"
MB = 1024 * 1024

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware), named in the librarian's language.
THROTTLE_BITS = {
    0: lazy_gettext("under-voltage now"),
    1: lazy_gettext("CPU speed capped now"),
    2: lazy_gettext("throttled now"),
    3: lazy_gettext("soft temperature limit now"),
    16: lazy_gettext("under-voltage has happened since start"),
    17: lazy_gettext("CPU speed capping has happened since start"),
    18: lazy_gettext("throttling has happened since start"),
    19: lazy_gettext("soft temperature limit has happened since start"),
}
UNDER_VOLTAGE_BITS = (0, 16)


@dataclass(frozen=True)
class DiskStatus:
    free_mb: int
    reserve_mb: int
    usable_mb: int  # free beyond the reserve: what imports and bundles may use
    low: bool


def disk_status(settings: Settings) -> DiskStatus:
    free = free_bytes(settings.home) // MB
    usable = max(0, free - settings.disk_reserve_mb)
    return DiskStatus(free_mb=free, reserve_mb=settings.disk_reserve_mb, usable_mb=usable,
                      low=usable < max(100, settings.upload_max_mb))


def cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """Degrees Celsius from the kernel's first thermal zone, or None when there is none."""
    try:
        raw = path.read_text().strip()
        return round(int(raw) / 1000.0, 1)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Throttling:
    value: int  # the bits `vcgencmd get_throttled` reports

    @property
    def raw(self) -> str:
        return hex(self.value)

    @property
    def flags(self) -> tuple[str, ...]:
        """The bits that are set, named in the librarian's language."""
        return tuple(str(name) for bit, name in THROTTLE_BITS.items() if self.value >> bit & 1)

    @property
    def under_voltage(self) -> bool:
        return any(self.value >> bit & 1 for bit in UNDER_VOLTAGE_BITS)


def parse_throttled(output: str) -> Throttling | None:
    """``throttled=0x50005`` -> the flags it sets; None if the text is not that."""
    text = output.strip()
    if not text.startswith("throttled="):
        return None
    try:
        value = int(text.split("=", 1)[1], 16)
    except ValueError:
        return None
    return Throttling(value)


def throttling(command: str = VCGENCMD, timeout: float = 3.0) -> Throttling | None:
    """Power and temperature flags from the Raspberry Pi firmware, or None where there is no vcgencmd."""
    executable = shutil.which(command)
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, "get_throttled"], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        logger.warning("vcgencmd get_throttled did not answer")
        return None
    return parse_throttled(done.stdout) if done.returncode == 0 else None


def installed_releases(db: sqlite_utils.Database) -> list[dict] | None:
    """The installed channel releases as the catalog records them; None on a box without channel tables."""
    if "channels" not in db.table_names():
        return None
    return [dict(row) for row in db.query(
        "SELECT name, subscribed, version, manifest_sha256 FROM channels ORDER BY name LIMIT 200")]

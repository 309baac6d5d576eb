"""One settings object for the box, read from ``LIBRARY_*`` environment variables.

Every field has a default and a help text; docs/settings.md's table is
checked against this module by a test. Settings are read once, in the CLI or
the app factory, never at import time.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "LIBRARY_"
# The whole settings of a process, for the processes it starts (Settings.to_json), where the
# LIBRARY_* variables could not say that a setting with a default is empty.
PASSED_ON = "LIBRARY_SETTINGS_JSON"


def _setting(default: Any, help: str) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings are immutable")
    return field(default=default, metadata={"help": help})


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    home: Path = _setting(Path("library-data"), "Data folder: catalog, blobs, index, keys, outbox.")
    host: str = _setting("127.0.0.1", "Address the web server listens on (0.0.0.0 on the box image).")
    port: int = _setting(8080, "Port the web server listens on.")
    box_name: str = _setting("Thư viện cộng đồng", "Friendly name of this library, shown to readers and announced on the network.")
    default_locale: str = _setting("vi", "Interface language when the browser asks for none we have.")
    page_size: int = _setting(20, "Books per page in search results, lists and feeds.")
    max_query_chars: int = _setting(200, "Longest search query accepted; longer ones get a 400 answer.")
    disk_reserve_mb: int = _setting(500, "Free disk space (MB) always kept in reserve; imports and bundles that would eat into it are refused.")
    max_chapter_kb: int = _setting(256, "Largest piece of a chapter (KB of HTML) shown on one reader page; longer chapters are split.")
    offline_html_max_mb: int = _setting(20, "Largest self-contained offline HTML file of a book (MB); to stay within it, pictures are left out, then the last chapters.")
    upload_max_mb: int = _setting(200, "Largest EPUB a librarian may upload from the browser (MB).")
    workers: int = _setting(1, "Processes answering requests, each with LIBRARY_THREADS threads: more use more cores, and each beyond the first takes 70-115 MB of memory; 0: one per core, at most 4.")
    threads: int = _setting(8, "Worker threads of the web server (more make searches take turns at the interpreter lock; fewer let a few slow searches hold up every page).")
    # The box's own Wi-Fi, DHCP, DNS and captive portal (rendered by `library config render`).
    wifi_ssid: str = _setting("Thu vien", "Name of the box's Wi-Fi network (at most 32 bytes).")
    wifi_country: str = _setting("VN", "Two-letter country code for the Wi-Fi radio's legal channels and power.")
    wifi_channel: int = _setting(6, "Wi-Fi channel (1-13 on 2.4 GHz; 36 and up on 5 GHz where allowed).")
    wifi_security: str = _setting("open", "open (anyone may join) or wpa2 (joining needs LIBRARY_WIFI_PASSPHRASE).")
    wifi_passphrase: str = _setting("", "Wi-Fi passphrase for wpa2: 8 to 63 plain ASCII characters; empty for an open network.")
    ap_interface: str = _setting("wlan0", "Network interface of the box's Wi-Fi access point.")
    uplink_interface: str = _setting("eth0", "Wired interface used for the internet link when there is one (DHCP client).")
    box_address: str = _setting("10.42.0.1", "The box's IPv4 address on its own Wi-Fi; every name looked up there answers with it.")
    ap_prefix_length: int = _setting(24, "Size of the Wi-Fi network around LIBRARY_BOX_ADDRESS (24 means 255.255.255.0).")
    dhcp_first: str = _setting("10.42.0.10", "First address lent to phones.")
    dhcp_last: str = _setting("10.42.0.250", "Last address lent to phones.")
    dhcp_lease_hours: int = _setting(12, "How long a phone keeps its address (hours).")
    local_domain: str = _setting("library.lan", "Name of the library on its own Wi-Fi (http://library.lan/).")
    portal_memory_minutes: int = _setting(60, "How long the captive portal remembers (in memory, by address) a phone that saw its welcome page.")
    stats_min_term_count: int = _setting(10, "A search term leaves the box in statistics only once it was searched at least this many times.")
    hub_url: str = _setting("", "Address of the central hub, e.g. https://hub.example.org; empty: the sync agent only works with peers and USB sticks.")
    sync_interval_minutes: int = _setting(10, "How often the sync agent looks for new releases when a link is up.")
    sync_budget_mb_per_day: int = _setting(0, "Most data (MB) the sync agent may use per day on a metered link; 0 for no limit.")
    sync_hours: str = _setting("", "Hours of the day (UTC) when the link may be used, e.g. 22-6 for nights only; empty for any time.")
    sync_max_kbps: int = _setting(0, "Highest download rate the sync agent uses (kbit/s), to leave room for others; 0 for no limit.")
    # Finding other boxes on the local network (zeroconf) and syncing with them.
    box_role: str = _setting("village", "village (a box that stays in one place) or van (a box that travels between villages and carries releases and statistics).")
    discovery: bool = _setting(False, "Announce this box on the local network with zeroconf and look for other boxes (yes on the box image).")
    discovery_interfaces: str = _setting("", "Comma-separated IP addresses zeroconf uses; empty means every interface.")
    peers: str = _setting("", "Comma-separated addresses (host:port) of other boxes to sync with when multicast discovery is blocked.")

    @property
    def db_path(self) -> Path:
        return self.home / "catalog.db"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def staging_dir(self) -> Path:
        return self.home / "staging"

    @property
    def offline_dir(self) -> Path:
        return self.home / "cache" / "offline"

    @property
    def outbox_dir(self) -> Path:
        return self.home / "outbox"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``LIBRARY_<FIELD>`` variables, then explicit overrides (e.g. CLI options)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        return cls(**values)

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).expanduser().absolute())
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, int) or value < 0):
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be a whole number of 0 or more, not {value!r}")
        if self.box_role not in ("village", "van"):
            raise SettingsError(f"{ENV_PREFIX}BOX_ROLE must be village or van, not {self.box_role!r}")

    def to_env(self) -> dict[str, str]:
        """These settings as ``LIBRARY_*`` variables that ``from_env`` reads back the same."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        return out

    def to_json(self) -> str:
        """These settings, every one as it is (empty ones too), for ``from_json`` in another process."""
        return json.dumps({f.name: str(value) if isinstance(value := getattr(self, f.name), Path) else value
                           for f in fields(self)})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    @classmethod
    def passed_on(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the process that started this one put in ``PASSED_ON`` (see ``child_env``)."""
        environ = os.environ if environ is None else environ
        return cls.from_json(environ[PASSED_ON])

    def child_env(self) -> dict[str, str]:
        """The environment for a process of this box that reads ``Settings.passed_on()``."""
        return {**os.environ, PASSED_ON: self.to_json()}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _convert(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = ENV_PREFIX + f.name.upper()
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if kind == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be yes or no, not {raw!r}")
    if kind == "Path":
        return Path(raw)
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting, for docs/settings.md and ``library settings``."""
    rows = []
    for f in fields(Settings):
        rows.append((ENV_PREFIX + f.name.upper(), str(f.default), f.metadata["help"]))
    return rows

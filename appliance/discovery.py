"""Finding other boxes on the local network with zeroconf (mDNS / DNS-SD).

Each box announces three services under its friendly name:

- ``_http._tcp``: its web page (TXT ``path=/``), so a phone or laptop lists it;
- ``_opds._tcp``: its OPDS catalog (TXT ``path=/opds``), for reader apps that browse for one;
- ``_vlib-sync._tcp``: its sync endpoint, the project's own type, with TXT records
  ``id`` (the box's public key), ``role`` (``village`` or ``van``), ``ch`` (installed
  channels as ``name=version`` pairs), ``v`` (software version) and ``path``.

The same object browses for ``_vlib-sync._tcp`` and keeps a table of the other boxes it
hears (``peers()``). Addresses are checked every few seconds and the services updated when
they change (a van's box gets a new address in each village). ``close()`` unregisters the
services, so peers drop this box at once, and is safe to call twice.

Nothing in a TXT record is trusted: a peer is only a place to fetch signed files from.
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TypeVar

import ifaddr
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

logger = logging.getLogger(__name__)
T = TypeVar("T")

WEB_TYPE = "_http._tcp.local."
OPDS_TYPE = "_opds._tcp.local."
SYNC_TYPE = "_vlib-sync._tcp.local."
SYNC_PATH = "/api/v1/"
ADDRESS_CHECK_SECONDS = 5.0
RESOLVE_TIMEOUT_MS = 3000
MAX_LABEL_BYTES = 63
MAX_TXT_VALUE = 200


def software_version() -> str:
    try:
        return metadata.version("village-library")
    except metadata.PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class Peer:
    """Another box heard on the network (or configured by hand)."""

    name: str  # friendly name, as announced
    addresses: tuple[str, ...]
    port: int
    box_id: str = ""  # its public key; "" when configured by hand and not yet asked
    role: str = "village"
    channels: Mapping[str, int] = field(default_factory=dict)
    version: str = ""
    path: str = SYNC_PATH
    configured: bool = False  # given by address in LIBRARY_PEERS rather than discovered

    @property
    def base_url(self) -> str:
        host = self.addresses[0] if self.addresses else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def web_url(self) -> str:
        return self.base_url + "/"


def encode_channels(channels: Mapping[str, int]) -> str:
    """``name=version`` pairs joined by commas, cut to fit one TXT value."""
    out = ""
    for name, version in sorted(channels.items()):
        pair = f"{name}={int(version)}"
        candidate = f"{out},{pair}" if out else pair
        if len(candidate.encode()) > MAX_TXT_VALUE:
            break
        out = candidate
    return out


def decode_channels(text: str) -> dict[str, int]:
    channels: dict[str, int] = {}
    for pair in text.split(","):
        name, sep, version = pair.partition("=")
        if sep and name and version.isdigit():
            channels[name] = int(version)
    return channels


def parse_peer_addresses(text: str) -> list[Peer]:
    """Peers given by hand as ``host:port`` (``[v6]:port``), comma-separated; a missing port means 80."""
    peers = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, port = item, 80
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
            port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"peer {item!r} has no valid port")
        peers.append(Peer(name=item, addresses=(host,), port=port, configured=True))
    return peers


def local_addresses(only: Iterable[str] = ()) -> list[str]:
    """This machine's IPv4 addresses to announce: ``only`` if given, else every non-loopback one."""
    wanted = [a.strip() for a in only if a.strip()]
    if wanted:
        return wanted
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                address = ipaddress.ip_address(ip.ip)
                if not address.is_loopback and not address.is_link_local:
                    found.append(ip.ip)
    return sorted(set(found))


def _label(text: str) -> str:
    """A DNS-SD instance name: at most 63 bytes of UTF-8, cut on a character boundary, no dots."""
    text = " ".join(text.replace(".", " ").split()) or "Library"
    raw = text.encode()[:MAX_LABEL_BYTES]
    return raw.decode("utf-8", errors="ignore").strip()


class Discovery:
    """Announces this box and keeps a table of the other boxes heard on the network."""

    def __init__(self, *, name: str, port: int, box_id: str, role: str = "village",
                 channels: Callable[[], Mapping[str, int]] = dict, interfaces: Iterable[str] = (),
                 addresses: Callable[[], list[str]] | None = None,
                 check_seconds: float = ADDRESS_CHECK_SECONDS, announce: bool = True) -> None:
        self.name = _label(name)
        self.port = int(port)
        self.box_id = box_id
        self.role = role
        self._channels = channels
        self._interfaces = [a.strip() for a in interfaces if a.strip()]
        self._addresses = addresses or (lambda: local_addresses(self._interfaces))
        self._check_seconds = check_seconds
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._infos: list[ServiceInfo] = []
        self._announced: tuple[list[str], str] | None = None
        self._peers: dict[str, Peer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resolve: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._announce = announce

    # -- announcing ------------------------------------------------------------------

    def start(self) -> Discovery:
        interfaces = self._interfaces or None
        self._zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces \
            else Zeroconf(ip_version=IPVersion.V4Only)
        if self._announce:
            self._register()
        self._browser = ServiceBrowser(self._zc, SYNC_TYPE, handlers=[self._on_change])
        loops = [(self._resolver, "discovery-resolve")]
        if self._announce:
            loops.append((self._watch, "discovery-watch"))
        for target, label in loops:
            thread = threading.Thread(target=target, name=label, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("%s %r on port %d", "announcing" if self._announce else "looking for peers as", self.name, self.port)
        return self

    def _infos_for(self, addresses: list[str], channels: str) -> list[ServiceInfo]:
        packed = [socket.inet_aton(a) for a in addresses]
        host = f"vlib-{self.box_id_short}.local."
        common = {"v": software_version(), "role": self.role}
        services = (
            (WEB_TYPE, {"path": "/"}),
            (OPDS_TYPE, {"path": "/opds"}),
            (SYNC_TYPE, {"path": SYNC_PATH, "id": self.box_id, "ch": channels}),
        )
        return [
            ServiceInfo(kind, f"{self.name}.{kind}", addresses=packed, port=self.port,
                        properties={**common, **props}, server=host)
            for kind, props in services
        ]

    @property
    def box_id_short(self) -> str:
        safe = "".join(c for c in self.box_id.lower() if c.isalnum())
        return safe[:12] or "box"

    def _register(self) -> None:
        assert self._zc is not None
        addresses = self._addresses()
        channels = encode_channels(self._safe_channels())
        infos = self._infos_for(addresses, channels)
        if not self._infos:
            for info in infos:
                self._zc.register_service(info, allow_name_change=True)
            self._infos = infos
        else:
            # Keep any name the network made us change to (" (2)").
            updated = []
            for old, new in zip(self._infos, infos, strict=True):
                info = ServiceInfo(old.type, old.name, addresses=new.addresses, port=new.port,
                                   properties=new.properties, server=old.server)
                self._zc.update_service(info)
                updated.append(info)
            self._infos = updated
        self._announced = (addresses, channels)

    def _safe_channels(self) -> Mapping[str, int]:
        try:
            return self._channels()
        except Exception:  # the catalog may be busy or not migrated yet: announce none this time
            logger.exception("could not read installed channels")
            return {}

    def _watch(self) -> None:
        while not self._stop.wait(self._check_seconds):
            try:
                now = (self._addresses(), encode_channels(self._safe_channels()))
                if now != self._announced:
                    logger.info("addresses or channels changed to %s; announcing again", now)
                    self._register()
            except Exception:
                logger.exception("re-announcing failed; will try again")

    # -- browsing --------------------------------------------------------------------

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._peers.pop(name, None)
        else:
            self._resolve.put((service_type, name))

    def _resolver(self) -> None:
        while not self._stop.is_set():
            item = self._resolve.get()
            if item is None or self._zc is None:
                return
            service_type, name = item
            try:
                info = self._zc.get_service_info(service_type, name, timeout=RESOLVE_TIMEOUT_MS)
            except Exception:
                logger.exception("could not resolve %s", name)
                continue
            peer = peer_from_info(info) if info else None
            if peer is None or peer.box_id == self.box_id:
                continue
            with self._lock:
                self._peers[name] = peer
            logger.info("heard %s box %r at %s", peer.role, peer.name, peer.base_url)

    def peers(self) -> list[Peer]:
        """The other boxes heard and not yet gone, by name."""
        with self._lock:
            return sorted(self._peers.values(), key=lambda p: p.name)

    def vans(self) -> list[Peer]:
        return [p for p in self.peers() if p.role == "van"]

    # -- shutting down ---------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._resolve.put(None)
        zc, self._zc = self._zc, None
        try:
            if self._browser is not None:
                self._browser.cancel()
            if zc is not None and self._announce:
                zc.unregister_all_services()
        finally:
            if zc is not None:
                zc.close()
        for thread in self._threads:
            thread.join(timeout=2)
        logger.info("stopped announcing %r", self.name)


def peer_from_info(info: ServiceInfo) -> Peer | None:
    """A peer from a resolved sync service, or None when its record is unusable."""
    props = {}
    for key, value in (info.properties or {}).items():
        try:
            props[key.decode()] = value.decode() if value is not None else ""
        except (UnicodeDecodeError, AttributeError):
            continue
    addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
    if not addresses or not info.port:
        return None
    role = props.get("role", "village")
    name = info.name.removesuffix("." + info.type).strip()
    return Peer(name=name, addresses=addresses, port=info.port, box_id=props.get("id", ""),
                role=role if role in ("village", "van") else "village",
                channels=decode_channels(props.get("ch", "")), version=props.get("v", ""),
                path=props.get("path", SYNC_PATH) or SYNC_PATH)


def wait_for(predicate: Callable[[], T], timeout: float, step: float = 0.1) -> T:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass (for tests and the CLI); the
    first true value it gave, else its last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def installed_channels(db_path) -> dict[str, int]:
    """Installed channel versions, read straight from the catalog (empty before any release)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute("SELECT name, version FROM channels WHERE version IS NOT NULL").fetchall()
    except sqlite3.Error:  # no channels table yet
        return {}
    finally:
        conn.close()
    return {str(name): int(version) for name, version in rows}


def start_for_box(settings, port: int) -> Discovery:
    """Announce the box described by ``settings`` serving on ``port``; the web app shows nearby vans."""
    from appliance.storage.keys import ensure_box_key

    box_id, _ = ensure_box_key(settings.keys_dir)
    discovery = Discovery(name=settings.box_name, port=port, box_id=box_id, role=settings.box_role,
                          channels=lambda: installed_channels(settings.db_path),
                          interfaces=settings.discovery_interfaces.split(","))
    discovery.start()
    return discovery

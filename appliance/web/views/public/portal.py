"""Captive portal: answer the phones' connectivity probes so the library opens and the phone stays on the Wi-Fi.

On the box's Wi-Fi every name resolves to the box (see appliance/system/dns.py), so a phone's probe
such as ``http://connectivitycheck.gstatic.com/generate_204`` arrives here with the probe's Host header;
the answer depends on the path only. Until a phone has seen the welcome page and followed its
"Continue" link, a probe gets a redirect to that page, which makes the phone show it. Afterwards the
probe gets the exact answer the operating system expects, so the phone believes it is online, keeps
the Wi-Fi and lets the reader use a real browser.

Phones are remembered by IP address in memory only, for ``portal_memory_minutes``; nothing is written
to disk or sent anywhere.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

bp = Blueprint("portal", __name__)

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
WINDOWS_CONNECT_TEST = "Microsoft Connect Test"
WINDOWS_NCSI = "Microsoft NCSI"
FIREFOX_SUCCESS = "success\n"

NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


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


@bp.record_once
def _make_memory(state) -> None:
    settings = state.app.extensions["library"].settings
    state.app.extensions["portal"] = PortalMemory(settings.portal_memory_minutes)


def portal_memory() -> PortalMemory:
    return current_app.extensions["portal"]


def _client() -> str:
    return request.remote_addr or ""


def _library_origin() -> str:
    """``http://library.lan`` (with the port when it is not 80): the library under its own name."""
    settings = current_app.extensions["library"].settings
    port = request.environ.get("SERVER_PORT", "80")
    host = settings.local_domain if port == "80" else f"{settings.local_domain}:{port}"
    return f"http://{host}"


def _welcome_url() -> str:
    """The welcome page under the library's own name (the probe came in under a foreign one)."""
    return _library_origin() + url_for("portal.welcome")


def _probe_answer(make_success: Callable[[], Response]) -> Response:
    if portal_memory().has_seen(_client()):
        response = make_success()
    else:
        response = redirect(_welcome_url(), code=302)
    response.headers.update(NO_CACHE)
    return response


def _text(body: str, mimetype: str = "text/plain") -> Callable[[], Response]:
    return lambda: Response(body, mimetype=mimetype)


@bp.get("/generate_204")
@bp.get("/gen_204")
def android_probe():
    """Android and ChromeOS: an empty 204 means online."""
    return _probe_answer(lambda: Response(status=204))


@bp.get("/hotspot-detect.html")
@bp.get("/library/test/success.html")
def apple_probe():
    """Apple: this exact page means online."""
    return _probe_answer(_text(APPLE_SUCCESS, "text/html"))


@bp.get("/connecttest.txt")
def windows_probe():
    return _probe_answer(_text(WINDOWS_CONNECT_TEST))


@bp.get("/ncsi.txt")
def windows_old_probe():
    return _probe_answer(_text(WINDOWS_NCSI))


@bp.get("/success.txt")
def firefox_probe():
    return _probe_answer(_text(FIREFOX_SUCCESS))


@bp.get("/redirect")
def windows_portal_redirect():
    """Where Windows sends the browser when it believes there is a portal."""
    response = redirect(_welcome_url(), code=302)
    response.headers.update(NO_CACHE)
    return response


@bp.get("/portal")
def welcome():
    response = Response(render_template("portal.html", library_address=_library_origin() + "/"))
    response.headers.update(NO_CACHE)
    return response


@bp.get("/portal/continue")
def carry_on():
    """The reader has seen the welcome page: from now on the probes say "online"."""
    portal_memory().welcome(_client())
    response = redirect(url_for("home.index"), code=303)
    response.headers.update(NO_CACHE)
    return response

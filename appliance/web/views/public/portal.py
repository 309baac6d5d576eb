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

from collections.abc import Callable

from flask import Blueprint, Response, redirect, render_template, request, url_for

from appliance.web.context import library_state, services
from appliance.web.portalmemory import PortalMemory

bp = Blueprint("portal", __name__)

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
WINDOWS_CONNECT_TEST = "Microsoft Connect Test"
WINDOWS_NCSI = "Microsoft NCSI"
FIREFOX_SUCCESS = "success\n"

NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


def portal_memory() -> PortalMemory:
    return services().portal


def _client() -> str:
    return request.remote_addr or ""


def _library_origin() -> str:
    """``http://library.lan`` (with the port when it is not 80): the library under its own name."""
    settings = library_state().settings
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

"""QR codes as inline SVG, made on the box (phones scan them to open a book or join the Wi-Fi).

segno draws a code as one path of horizontal runs: about 1.5 KB for a book's address, where the
per-module path of the library used before took 4.8 KB of every book page, and 2 ms to make where
that took 4 (most of either is choosing the mask, as the standard asks, among eight). Codes are
kept in memory by their text, up to ``CACHE_BYTES``, so a book opened again costs nothing. A book
page does not carry its code: it links to it as a picture loaded when the reader scrolls to it.
"""
from __future__ import annotations

from html import escape

import segno
from markupsafe import Markup

from appliance.lru import SizedLRU

CACHE_BYTES = 2 * 1024 * 1024  # about 1,300 books' codes
_made: SizedLRU[str] = SizedLRU(CACHE_BYTES)


def _svg(text: str) -> str:
    """The code of ``text`` (error correction M or better) as an SVG element, without a namespace
    (for HTML) or with one (for a file)."""
    svg = _made.get(text)
    if svg is None:
        code = segno.make(text, error="m", micro=False)
        svg = code.svg_inline(scale=1, border=2, omitsize=True, svgclass=None, lineclass=None)
        _made.put(text, svg, len(svg) + len(text))
    return svg


def qr_svg(text: str, label: str) -> Markup:
    """An SVG QR code of ``text`` with an accessible label, to put in a page (the poster)."""
    return Markup(_svg(text).replace("<svg", f'<svg role="img" aria-label="{escape(label)}" class="qr"', 1))


def qr_svg_file(text: str) -> bytes:
    """An SVG file of the QR code of ``text`` (a book page's picture, which the phone loads only when
    it is scrolled to, and keeps)."""
    return _svg(text).replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1).encode("utf-8")


def wifi_payload(ssid: str, security: str, passphrase: str) -> str:
    """The text phones' cameras read as "join this Wi-Fi" (the WIFI: scheme)."""
    def esc(value: str) -> str:
        return "".join("\\" + c if c in '\\;,:"' else c for c in value)

    if security == "wpa2" and passphrase:
        return f"WIFI:T:WPA;S:{esc(ssid)};P:{esc(passphrase)};;"
    return f"WIFI:T:nopass;S:{esc(ssid)};;"

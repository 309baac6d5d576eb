"""QR codes as inline SVG, made on the box (phones scan them to open a book or join the Wi-Fi)."""
from __future__ import annotations

import io
from functools import lru_cache

import qrcode
import qrcode.image.svg
from markupsafe import Markup


@lru_cache(maxsize=128)  # drawing a code costs milliseconds and keeping one about 8 KB: keep the popular books
def qr_svg(text: str, label: str) -> Markup:
    """An SVG QR code of ``text`` with an accessible label."""
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode("utf-8")
    svg = svg[svg.index("<svg"):]
    from html import escape

    return Markup(svg.replace("<svg", f'<svg role="img" aria-label="{escape(label)}" class="qr"', 1))


def wifi_payload(ssid: str, security: str, passphrase: str) -> str:
    """The text phones' cameras read as "join this Wi-Fi" (the WIFI: scheme)."""
    def esc(value: str) -> str:
        return "".join("\\" + c if c in '\\;,:"' else c for c in value)

    if security == "wpa2" and passphrase:
        return f"WIFI:T:WPA;S:{esc(ssid)};P:{esc(passphrase)};;"
    return f"WIFI:T:nopass;S:{esc(ssid)};;"

"""Security headers on every answer of the web app.

The box's Wi-Fi is open and its pages show text from books that nobody on the box wrote. Whatever a
book contains, a page must never run script from it, in a reader's browser or in a librarian's
logged-in session. Book HTML is sanitized before it is shown; the Content-Security-Policy below is
the second wall: only script files served by the box itself may run (no inline script, no
``javascript:`` links, no event-handler attributes, no eval), no plugins, no frames, and no other
site may frame the box's pages. Any page that needs a little script loads it as a static file.

Inline ``style`` stays allowed: chapters and the self-contained offline book carry their own CSS,
and style cannot run code.
"""
from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "media-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-src 'none'",
    "child-src 'none'",
    "worker-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
])

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def add_security_headers(response: Response) -> Response:
    """Set the headers on ``response``.

    A view may send its own, stricter Content-Security-Policy; this one is then sent beside it, and
    a browser enforces both, so no view can loosen the box's policy.
    """
    for name, value in HEADERS.items():
        if name == "Content-Security-Policy" and value not in response.headers.getlist(name):
            response.headers.add(name, value)
        else:
            response.headers.setdefault(name, value)
    return response


def init_security(app: Flask) -> None:
    app.after_request(add_security_headers)

"""Reading query parameters strictly: anything odd is a 400 that says why in the page's language, never a 500."""
from __future__ import annotations

from flask import request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from appliance.web.context import library_state

MAX_PAGE = 10_000


def int_arg(name: str, default: int, *, minimum: int = 1, maximum: int = MAX_PAGE) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadRequest(_("%(name)s must be a whole number", name=name))
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(_("%(name)s must be between %(low)d and %(high)d", name=name, low=minimum, high=maximum))
    return value


def text_arg(name: str, *, max_chars: int | None = None) -> str:
    raw = request.args.get(name, "")
    limit = max_chars or library_state().settings.max_query_chars
    if len(raw) > limit:
        raise BadRequest(_("The text is too long (at most %(limit)d characters).", limit=limit))
    if any(ord(c) < 32 and c not in "\t\n\r" for c in raw) or any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise BadRequest(_("The text holds characters that cannot be typed."))
    return raw.strip()


def language_arg(name: str = "lang") -> str | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > 20 or not all(c.isascii() and (c.isalnum() or c == "-") for c in raw):
        raise BadRequest(_("%(name)s must be a language code such as vi or en", name=name))
    return raw.lower()


def page_size() -> int:
    return library_state().settings.page_size

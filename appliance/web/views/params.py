"""Reading query parameters strictly: anything odd is a 400, never a 500."""
from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest

from appliance.web.context import library_state

MAX_PAGE = 10_000


def int_arg(name: str, default: int, *, minimum: int = 1, maximum: int = MAX_PAGE) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"{name} must be a whole number")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name} must be between {minimum} and {maximum}")
    return value


def text_arg(name: str, *, max_chars: int | None = None) -> str:
    raw = request.args.get(name, "")
    limit = max_chars or library_state().settings.max_query_chars
    if len(raw) > limit:
        raise BadRequest(f"{name} is too long (at most {limit} characters)")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in raw) or any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise BadRequest(f"{name} contains control characters")
    return raw.strip()


def language_arg(name: str = "lang") -> str | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > 20 or not all(c.isascii() and (c.isalnum() or c == "-") for c in raw):
        raise BadRequest(f"{name} must be a language tag such as vi or en")
    return raw.lower()


def page_size() -> int:
    return library_state().settings.page_size

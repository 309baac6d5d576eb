"""Whole answers for the few pages every phone asks for, kept for a few seconds.

Twenty phones opening the home page, or reader apps refreshing the OPDS root, would each pay for
the same queries, the same template and the web framework's own work per request. This layer
sits in front of the web app (WSGI) and keeps the status, headers and body of a successful GET
of those paths under a key naming everything the page depends on: the path, the host it was
asked for (feeds hold absolute links), the request's cookies (language, the reader's "continue
reading" place, a librarian's session), its Accept-Language, and the box's state (the catalog's
change counter and the welcome text, read in one small query). Anything that changes without
a key change (most read this month, vans nearby) is at most ``seconds`` old.

Search pages are kept the same way, with their query string in the key and the search index's
state beside the catalog's, and of the cookies only the interface language (each reader's "continue
reading" place differs and does not change the page): a class of phones asking for the same words
at once is answered by one search. What a page must still do for every reader (counting a search
in the statistics) it leaves in ``environ[ON_REPLAY]``, which is called each time its kept answer
is given again.

A kept answer is replayed as it was, with its security headers; a matching If-None-Match gets
304. Answers that set a cookie, and anything but a plain 200, are never kept. The bodies kept
together stay under ``max_bytes``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from werkzeug.http import parse_cookie, parse_etags, unquote_etag

from appliance.lru import SizedLRU

__all__ = ["HotPages", "Kept", "ON_REPLAY"]

logger = logging.getLogger(__name__)

ON_REPLAY = "appliance.web.pagecache.on_replay"

# How long each kept page lives, in seconds: the one table of page lifetimes (the factory reads it).
LIFETIMES = {
    "home": 5.0,  # the vans banner on the home page is at most this old
    "opds-root": 30.0,  # the root OPDS feeds (1.2 and 2.0)
    "search": 10.0,  # a search page, for the same words asked again
}
_NOT_REPLAYED_ON_304 = {"content-length", "content-type"}


@dataclass(frozen=True)
class Kept:
    """How the answers of one path are kept."""

    seconds: float
    with_query: bool = False  # the query string is part of the key (else requests with one are not kept)
    state: Callable[[], Hashable] | None = None  # what else the page depends on
    # The cookies the page depends on; None: the whole Cookie header is part of the key.
    cookies: tuple[str, ...] | None = None


@dataclass
class _Answer:
    at: float
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    etag: str | None
    on_replay: Callable[[], object] | None


class HotPages:
    def __init__(self, app, pages: dict[str, float | Kept], state: Callable[[], Hashable], size: int = 256,
                 max_bytes: int = 1024 * 1024):
        self.app = app
        self.pages = {path: how if isinstance(how, Kept) else Kept(how) for path, how in pages.items()}
        self.state = state
        self._kept: SizedLRU[_Answer] = SizedLRU(max_bytes, size)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        how = self.pages.get(path)
        query = environ.get("QUERY_STRING", "")
        if how is None or method not in ("GET", "HEAD") or (query and not how.with_query):
            return self.app(environ, start_response)
        try:
            key = (path, query, environ.get("SCRIPT_NAME", ""), environ.get("wsgi.url_scheme"),
                   environ.get("HTTP_HOST"), _cookies(environ, how.cookies), environ.get("HTTP_ACCEPT_LANGUAGE"),
                   self.state(), how.state() if how.state is not None else None)
        except Exception:  # the catalog cannot be read: let the app answer (and report) it
            return self.app(environ, start_response)
        now = time.monotonic()
        found = self._kept.get(key)
        if found is not None and now - found.at < how.seconds:
            if found.on_replay is not None and method == "GET":
                try:
                    found.on_replay()
                except Exception:  # what a page does besides answering must not stop the answer
                    logger.exception("a kept page's replay step failed")
            return self._replay(environ, start_response, found.status, found.headers, found.body, found.etag)
        if method == "HEAD":
            return self.app(environ, start_response)
        return self._answer_and_keep(environ, start_response, key, now)

    @staticmethod
    def _replay(environ, start_response, status: str, headers: list[tuple[str, str]], body: bytes,
                etag: str | None) -> Iterable[bytes]:
        asked = environ.get("HTTP_IF_NONE_MATCH")
        if etag is not None and asked and parse_etags(asked).contains_weak(etag):
            start_response("304 NOT MODIFIED", [(k, v) for k, v in headers if k.lower() not in _NOT_REPLAYED_ON_304])
            return []
        start_response(status, headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _answer_and_keep(self, environ, start_response, key: Hashable, now: float) -> Iterable[bytes]:
        seen: dict = {}

        def remember(status, headers, exc_info=None):
            if exc_info is not None and seen:
                raise exc_info[1].with_traceback(exc_info[2])
            seen["status"], seen["headers"] = status, list(headers)
            return seen.setdefault("written", []).append

        # The app checks If-None-Match itself; ask it without, so what it answers can be kept.
        asked = environ.pop("HTTP_IF_NONE_MATCH", None)
        result = self.app(environ, remember)
        try:
            body = b"".join([*seen.get("written", []), *result])
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if asked is not None:
            environ["HTTP_IF_NONE_MATCH"] = asked
        status, headers = seen["status"], seen["headers"]
        names = {k.lower() for k, _ in headers}
        etag_header = next((v for k, v in headers if k.lower() == "etag"), None)
        etag = unquote_etag(etag_header)[0] if etag_header else None
        if not status.startswith("200 "):
            start_response(status, headers)
            return [body]
        if "set-cookie" not in names:
            self._kept.put(key, _Answer(now, status, headers, body, etag, environ.get(ON_REPLAY)), len(body))
        return self._replay(environ, start_response, status, headers, body, etag)


def _cookies(environ: dict, names: tuple[str, ...] | None) -> Hashable:
    header = environ.get("HTTP_COOKIE")
    if names is None:
        return header
    cookies = parse_cookie(header) if header else {}
    return tuple(cookies.get(name) for name in names)

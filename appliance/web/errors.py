"""Domain errors and the one place that maps errors to HTTP answers."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException, LengthRequired, RequestEntityTooLarge

logger = logging.getLogger(__name__)


class InsufficientStorage(HTTPException):
    """507: the box keeps no more of this (werkzeug has no class for it, so ``abort(507)`` fails)."""

    code = 507
    description = "The library's disk is full."


def bounded_body(limit: int) -> bytes:
    """The request's body, refused with 411 or 413 before anything is read when its declared length
    is missing or over ``limit`` (a phone may post to the peer endpoints: the whole body of a 190 MB
    post was read into memory before its size was checked)."""
    length = request.content_length
    if length is None:
        raise LengthRequired()
    if length > limit:
        raise RequestEntityTooLarge(f"at most {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge(f"at most {limit} bytes")
    return data


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if wants_json():
            response = jsonify(error=e.name, message=e.description, status=e.code)
            response.status_code = e.code or 500
            return response
        # werkzeug's own description is English and for programmers; one a view gave says what went wrong.
        told = e.description if e.description != type(e).description else None
        return render_template("error.html", title=error_title(e.code), message=told, code=e.code), e.code

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        logger.exception("unexpected error on %s", request.path)
        if wants_json():
            return jsonify(error="Internal Server Error", status=500), 500
        return render_template("error.html", title=error_title(500), message=None, code=500), 500


def error_title(code: int | None) -> str:
    """What an error page says first, in the reader's language."""
    titles = {
        400: _("Something in this request is not right."),
        403: _("This page is not open to you."),
        404: _("This page is not in the library."),
        405: _("This page cannot be used this way."),
        413: _("This is too large for the library."),
        429: _("Too many tries: wait a little, then try again."),
        503: _("The library is busy: try again in a moment."),
        507: _("The library's disk is full."),
    }
    return titles.get(code or 500, _("Something went wrong"))

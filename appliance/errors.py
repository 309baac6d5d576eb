"""Domain errors and the one place that maps errors to HTTP answers."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if wants_json():
            response = jsonify(error=e.name, message=e.description, status=e.code)
            response.status_code = e.code or 500
            return response
        return render_template("error.html", error=e), e.code

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        logger.exception("unexpected error on %s", request.path)
        if wants_json():
            return jsonify(error="Internal Server Error", status=500), 500
        return render_template("error.html", error=None), 500

"""Blueprints, one per area of the site."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from . import admin, api, books, home, opds, peer, portal, reader, search

    for module in (home, search, books, reader, api, opds, peer, portal, admin):
        app.register_blueprint(module.bp)

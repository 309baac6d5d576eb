"""Blueprints, one per area of the site."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from . import admin, api, books, home, opds, portal, search

    for module in (home, search, books, api, opds, portal, admin):
        app.register_blueprint(module.bp)

"""Blueprints, one per area of the site. Only the web factory imports this package."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from appliance.web.views.admin import access, accounts, channels, stats, sync, system
    from appliance.web.views.admin import books as admin_books
    from appliance.web.views.public import api, books, home, opds, peer, portal, reader, search

    # The librarian's pages share one blueprint (access.bp): importing their modules adds their routes.
    del accounts, admin_books, channels, stats, sync, system
    for module in (home, search, books, reader, api, opds, peer, portal, access):
        app.register_blueprint(module.bp)

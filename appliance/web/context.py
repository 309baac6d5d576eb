"""What a view reaches for: the request's catalog connection and the app's services.

Views import this module, never the factory (which imports the views)."""
from __future__ import annotations

from flask import Flask, current_app, g

from appliance.web.services import BoxServices, LibraryState

EXTENSION = "box"  # the key of ``BoxServices`` in ``app.extensions``


def services(app: Flask | None = None) -> BoxServices:
    """The services of ``app`` (the current app when not given)."""
    return (app or current_app).extensions[EXTENSION]


def library_state() -> LibraryState:
    return services().library


def get_db():
    """The catalog connection of this request (opened on first use, closed at teardown)."""
    if "db" not in g:
        g.db = library_state().open_db()
    return g.db


def template_context() -> dict:
    """``nearby_vans`` for the templates: vans heard on the network by this web server."""
    return {"nearby_vans": services().vans.vans()}

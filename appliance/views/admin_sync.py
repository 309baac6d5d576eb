"""Librarian page section for the sync agent: what it did last, and a button to sync now."""
from __future__ import annotations

from flask import flash, redirect, url_for

from ..app import library_state
from ..background import jobs
from .admin import bp


def sync_status() -> list[str]:
    from content_sync.agent import SyncAgent, state_text

    return state_text(SyncAgent(library_state().settings).status())


@bp.app_template_global("sync_status_lines")
def sync_status_lines() -> list[str]:
    return sync_status()


@bp.post("/sync")
def sync_now():
    """Run every sync job once in the background (the agent process does the same on its schedule)."""
    settings = library_state().settings
    if not settings.hub_url:
        flash("No hub address is set (LIBRARY_HUB_URL): releases come from a USB stick or a van.")
        return redirect(url_for("admin.system"), code=303)
    if jobs().start_sync():
        flash("Sync started. Reload this page in a minute to see how it went.")
    else:
        flash("A sync is running already.")
    return redirect(url_for("admin.system"), code=303)

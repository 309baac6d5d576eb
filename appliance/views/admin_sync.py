"""Librarian page section for the sync agent: what it did last, and a button to sync now."""
from __future__ import annotations

import time

from flask import flash, redirect, url_for
from flask_babel import gettext as _

from ..app import library_state
from ..background import jobs
from .admin import bp


def sync_status() -> list[str]:
    """The agent's state in the librarian's language (``library sync status`` prints it in English)."""
    from content_sync.agent import SyncAgent

    state = SyncAgent(library_state().settings).status()
    return [
        _("hub: %(hub)s", hub=state.get("hub") or _("not set (LIBRARY_HUB_URL)")),
        _("last attempt: %(when)s", when=_when(state.get("sync_last_attempt"))),
        _("last success: %(when)s", when=_when(state.get("sync_last_success"))),
        _("last error: %(error)s", error=state.get("sync_last_error") or _("none")),
        _("bytes used today: %(n)s", n=state.get("bytes_today", 0)),
        _("statistics batches waiting: %(n)s", n=state.get("pending_batches", 0)),
    ]


def _when(value) -> str:
    """A moment the agent recorded ("<unix seconds> <job>") as UTC time and job, or "never"."""
    if not value:
        return _("never")
    stamp, _sep, job = str(value).partition(" ")
    return f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(float(stamp)))} UTC ({job})"


@bp.app_template_global("sync_status_lines")
def sync_status_lines() -> list[str]:
    return sync_status()


@bp.post("/sync")
def sync_now():
    """Run every sync job once in the background (the agent process does the same on its schedule)."""
    settings = library_state().settings
    if not settings.hub_url:
        flash(_("No hub address is set (LIBRARY_HUB_URL): releases come from a USB stick or a van."))
        return redirect(url_for("admin.system"), code=303)
    if jobs().start_sync():
        flash(_("Sync started. Reload this page in a minute to see how it went."))
    else:
        flash(_("A sync is running already."))
    return redirect(url_for("admin.system"), code=303)

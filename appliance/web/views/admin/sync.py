"""Librarian page section for the sync agent: what it did last, and a button to sync now."""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_babel import gettext as _

from appliance.storage.keys import HUB_PUBLIC_KEY
from appliance.web.context import library_state, services
from appliance.web.i18n import format_count, in_page_language
from appliance.web.views.admin.access import bp


def sync_status() -> list[str]:
    """The agent's state in the librarian's language (``library sync status`` prints it in English)."""
    # The agent's imports only when this page is asked for.
    from content_sync.sync.agent import SyncAgent, last_error, moment_parts

    def when(value) -> str:
        parts = moment_parts(value)
        return _("%(when)s (%(job)s)", when=parts[0], job=_(parts[1])) if parts else _("never")

    settings = library_state().settings
    state = SyncAgent(settings).status()
    error = last_error(state)
    error_text = in_page_language(error) if error else _("none")
    return [
        _("hub: %(hub)s", hub=state.get("hub") or _("not set (LIBRARY_HUB_URL)")),
        _("last attempt: %(when)s", when=when(state.get("sync_last_attempt"))),
        _("last success: %(when)s", when=when(state.get("sync_last_success"))),
        _("last error: %(error)s", error=error_text),
        _("bytes used today: %(n)s", n=format_count(int(state.get("bytes_today") or 0))),
        _("statistics batches waiting: %(n)s", n=state.get("pending_batches", 0)),
        *([] if (settings.keys_dir / HUB_PUBLIC_KEY).exists() else [_(
            "The hub's key is missing: this box cannot check the hub's signed time, nor learn which "
            "statistics reached the hub, so it hands them to every van again. It comes with the next "
            "release that names it, or copy the hub's hub-ed25519.pub to keys/hub.pub.")]),
    ]


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
    if services().jobs.start_sync():
        flash(_("Sync started. Reload this page in a minute to see how it went."))
    else:
        flash(_("A sync is running already."))
    return redirect(url_for("admin.system"), code=303)

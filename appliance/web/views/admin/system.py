"""Librarian pages about the box itself: system status, index rebuild, the welcome text."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.search import upkeep as indexing
from appliance.storage import catalog
from appliance.storage import db as dbmod
from appliance.system.boxstatus import cpu_temperature, disk_status, installed_releases, throttling
from appliance.web.context import get_db, library_state, services
from appliance.web.views.admin.access import bp, index_state_text

WELCOME_KEY = "welcome_text"
WELCOME_MAX_CHARS = 2000
QUARANTINE_SHOWN = 100  # the latest quarantined files on the system page


@bp.get("/system")
def system():
    db = get_db()
    state = library_state()
    return render_template(
        "admin/system.html",
        disk=disk_status(state.settings),
        index_state=index_state_text(),
        pending_index=indexing.pending_count(db),
        rebuild_running=services().jobs.rebuild_running(),
        rebuild_failed=services().jobs.rebuild_failed(),
        releases=installed_releases(db),
        quarantined=catalog.quarantined(db, QUARANTINE_SHOWN),
        quarantined_count=catalog.count_quarantined(db),
        temperature=cpu_temperature(),
        throttled=throttling(),
    )


@bp.post("/system/reindex")
def reindex():
    if services().jobs.start_index_rebuild():
        flash(_("The search index is being rebuilt. Searches use the current one until the new one is ready."))
    else:
        flash(_("The search index is already being rebuilt."))
    return redirect(url_for("admin.system"), code=303)


@bp.route("/welcome", methods=["GET", "POST"])
def welcome():
    db = get_db()
    error = None
    text = dbmod.get_setting(db, WELCOME_KEY, "") or ""
    if request.method == "POST":
        text = "\n".join(line.rstrip() for line in request.form.get("text", "").splitlines()).strip()
        if len(text) > WELCOME_MAX_CHARS:
            error = _("The welcome text can have at most %(n)d characters.", n=WELCOME_MAX_CHARS)
        elif any(ord(c) < 32 and c not in "\n\t" for c in text):
            error = _("The welcome text contains control characters.")
        else:
            dbmod.put_setting(db, WELCOME_KEY, text)
            flash(_("The welcome text is saved."))
            return redirect(url_for("admin.welcome"), code=303)
    return render_template("admin/welcome.html", text=text, error=error, max_chars=WELCOME_MAX_CHARS), \
        400 if error else 200

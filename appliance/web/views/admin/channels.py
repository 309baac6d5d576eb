"""Librarian page for content channels: what is installed, and which channels this box follows.

content_sync (and the EPUB reader and signatures it brings) is imported when a librarian opens
the page, not when the server starts."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.web.context import get_db
from appliance.web.i18n import in_page_language
from appliance.web.views.admin.access import bp


@bp.get("/channels")
def channels():
    from content_sync.sync import apply

    return render_template("admin/channels.html", channels=apply.channel_rows(get_db()), error=None)


@bp.post("/channels")
def channel_subscribe():
    from content_sync.protocol import releases as bundles
    from content_sync.sync import apply

    name = request.form.get("name", "").strip().lower()
    try:
        apply.subscribe(get_db(), name)
    except bundles.BundleError as e:  # the name is refused (bundles.check_channel_name)
        return render_template("admin/channels.html", channels=apply.channel_rows(get_db()),
                               error=in_page_language(e.message)), 400
    flash(_("This box now follows %(name)s; its next release is installed at the next sync.", name=name))
    return redirect(url_for("admin.channels"), code=303)


@bp.post("/channels/<name>/unsubscribe")
def channel_unsubscribe(name: str):
    from content_sync.sync import apply

    if not apply.unsubscribe(get_db(), name):
        return render_template("admin/channels.html", channels=apply.channel_rows(get_db()),
                               error=_("This box does not know that channel.")), 404
    flash(_("This box no longer follows %(name)s. Its books stay until you remove them.", name=name))
    return redirect(url_for("admin.channels"), code=303)

"""Librarian pages about use (counts only) and the box's clock."""
from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from appliance.search.finder import find_books
from appliance.stats import counts as stats
from appliance.stats.clock import DEFAULT_CLOCK, EARLIEST_PLAUSIBLE
from appliance.stats.counts import apply_trusted_time
from appliance.web.charts import bar_chart
from appliance.web.context import get_db, library_state
from appliance.web.views.admin.access import bp

logger = logging.getLogger(__name__)


@bp.app_template_global("clock_text")
def clock_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).strftime("%Y-%m-%d %H:%M")


@bp.get("/stats")
def usage():
    db = get_db()
    recorder = library_state().stats
    if recorder is not None:
        recorder.flush()
    per_day = stats.reads_per_day(db, 30)
    hours = stats.activity_by_hour(db)
    return render_template(
        "admin/stats.html",
        reads_chart=bar_chart([(d[5:], n) for d, n in per_day], title=_("Books opened per day"), label_every=5),
        hours_chart=bar_chart([(str(h), n) for h, n in enumerate(hours)], title=_("Activity by hour of day"),
                              label_every=3),
        per_day=per_day, top_books=stats.most_read(db, 30, 10), languages=stats.top_languages(db, 30),
        unfound=wish_list(db), clock=DEFAULT_CLOCK.status(db), clock_source=clock_source_text,
    )


def wish_list(db, limit: int = 30) -> list[dict]:
    """The searches that found nothing, each asked again: those that find books now (a release or
    an upload brought them) are marked answered and listed last."""
    index = library_state().index
    wishes = stats.unfound_searches(db, limit)
    for wish in wishes:
        try:
            wish["found_now"] = find_books(db, index, wish["term"], pagelen=1).total
        except Exception:  # a term the index cannot take: it stays a wish
            logger.exception("could not ask the wish %r again", wish["term"])
            wish["found_now"] = 0
    return sorted(wishes, key=lambda w: w["found_now"] > 0)


def clock_source_text(source: str | None) -> str:
    """Who set the clock (as the catalog keeps it, in English), in the librarian's language."""
    known = {"librarian phone": _("from a librarian’s device"), "hub": _("from the central hub")}
    return known.get(source or "", source or "")


@bp.post("/clock")
def set_clock():
    """Set the box's time from the librarian's phone (its clock is filled in by clock.js, or typed)."""
    raw = request.form.get("phone_time", "").strip()
    typed = request.form.get("typed_time", "").strip()
    try:
        if raw:
            moment = float(raw)
        elif typed:
            moment = datetime.strptime(typed, "%Y-%m-%dT%H:%M").replace(tzinfo=UTC).timestamp()
        else:
            return _not_set(_("The time was not set: no time was sent."))
    except (ValueError, OverflowError):
        return _not_set(_("The time was not set: this box cannot read the time that was sent."))
    try:
        apply_trusted_time(get_db(), moment, f"librarian {request.form.get('source', 'phone')[:20]}")
    except (ValueError, OverflowError):  # the clock refuses a time before EARLIEST_PLAUSIBLE
        earliest = datetime.fromtimestamp(EARLIEST_PLAUSIBLE, tz=UTC).year
        return _not_set(_("The time was not set: that time is before %(year)d; the device giving it has a wrong "
                          "clock.", year=earliest))
    flash(_("The box's clock is set."))
    return redirect(url_for("admin.usage"), code=303)


def _not_set(message: str):
    """Back to the page with the reason the clock was not set."""
    flash(message)
    return redirect(url_for("admin.usage"), code=303)

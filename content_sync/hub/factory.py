"""The hub's web side: release trees as static files, box registration, statistics, signed time.

    GET  /releases/<path>        the release tree (Range, ETag), the same files a USB stick carries
    GET  /api/v1/releases        each channel's newest version: one request tells a box what is new
    POST /api/v1/boxes           register (or report the status of) a box, signed with its key
    POST /api/v1/batches         a signed statistics batch; stored once per (box, batch)
    GET  /api/v1/time            the hub's current time, signed, for boxes without a clock
    GET  /api/v1/hub-key         the hub's public key (base64), to provision boxes
    GET  /                       the dashboard for central staff
"""
from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, abort, jsonify, render_template, request, send_from_directory
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from appliance.storage.keys import ed25519_key_pair, public_b64
from appliance.web.charts import bar_chart
from appliance.web.i18n import init_hub_i18n
from content_sync.hub.store import SqliteHubStore
from content_sync.protocol import releases as bundles
from content_sync.protocol.batches import (
    CARRIER_HEADER,
    CARRIER_SIGNATURE_HEADER,
    BatchInvalid,
    ack_message,
    verified_carrier,
    verify_batch,
)
from content_sync.protocol.registration import check_registration, time_message
from ui import UI_DIR

logger = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024
HUB_KEY = "hub-ed25519.key"
HUB_PUBLIC_KEY = "hub-ed25519.pub"


def hub_key(data_dir: Path) -> Ed25519PrivateKey:
    """The hub's key pair, made once in ``data_dir/keys``."""
    folder = data_dir / "keys"
    folder.mkdir(parents=True, exist_ok=True)
    return ed25519_key_pair(folder / HUB_KEY, folder / HUB_PUBLIC_KEY)[0]


def create_hub_app(data_dir: Path, clock=time.time, *, open_enrollment: bool = False) -> Flask:
    """The hub's app. A box registers the first time with an enrollment token the office issued for
    it (``library hub enroll``); with ``open_enrollment`` any box may (a closed network, or tests)."""
    data_dir = Path(data_dir)
    tree = data_dir / "tree"
    tree.mkdir(parents=True, exist_ok=True)
    store = SqliteHubStore(data_dir / "hub.db", clock=clock)
    key = hub_key(data_dir)
    app = Flask(__name__, template_folder=str(UI_DIR / "templates"), static_folder=str(UI_DIR / "static"))
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["hub_store"] = store
    init_hub_i18n(app)

    @app.get("/releases/<path:relpath>")
    def release_file(relpath: str):
        return send_from_directory(tree, relpath, conditional=True, max_age=60)

    @app.get("/api/v1/releases")
    def releases():
        channels = {}
        folder = tree / "channels"
        for channel in sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []:
            versions = bundles.tree_versions(tree, channel)
            if versions:
                channels[channel] = {"version": versions[-1]}
        return jsonify(channels=channels, tree="/releases/")

    @app.post("/api/v1/boxes")
    def register():
        try:
            registration = check_registration(request.get_json(silent=True))
        except (ValueError, RecursionError) as e:
            abort(403, str(e))
        if not open_enrollment and not store.is_registered(registration.box) \
                and not store.enroll(registration.box, registration.enrollment):
            abort(403, "this box is not enrolled: the central office gives each box a token "
                       "(library hub enroll), and the box keeps it (library sync enroll TOKEN)")
        kept = store.register_box(registration.box, registration.name, registration.status, registration.counter)
        # A stale registration (a replay, or one a van carried after a newer one came) is answered as
        # received, so that nobody sends it again, and changes nothing.
        return jsonify(registered=True, stale=not kept, time=clock())

    @app.post("/api/v1/batches")
    def batches():
        data = request.get_data(cache=False)
        try:
            payload = verify_batch(data)
        except BatchInvalid as e:
            abort(400, str(e))
        box = payload["box"]
        if not store.is_registered(box):
            abort(403, "this box is not registered with the hub")
        # Who carried it, when the carrier signed that it did and the hub knows the carrier.
        via = verified_carrier(data, request.headers.get(CARRIER_HEADER, "")[:100],
                               request.headers.get(CARRIER_SIGNATURE_HEADER, "")[:200])
        new = store.add_batch(box, payload["batch"], payload, via=via if via and store.is_registered(via) else "")
        # The acknowledgement is signed, so a van can carry it back and the box can believe it.
        signature = base64.b64encode(key.sign(ack_message(box, payload["batch"]))).decode("ascii")
        return jsonify(ack=[{"box": box, "batch": payload["batch"], "signature": signature}], new=new)

    @app.get("/api/v1/time")
    def signed_time():
        moment = round(clock(), 3)
        signature = key.sign(time_message(moment))
        return jsonify(time=moment, signature=base64.b64encode(signature).decode("ascii"))

    @app.get("/api/v1/hub-key")
    def hub_public_key():
        return jsonify(key=public_b64(key))

    @app.get("/")
    def dashboard():
        per_day = store.reads_per_day(30)
        return render_template(
            "hub/dashboard.html", boxes=store.boxes(), now=clock(),
            reads_chart=bar_chart([(d[5:], n) for d, n in per_day], title=_("Books opened per day, all boxes"),
                                  label_every=5),
            per_day=per_day, top_books=store.top_books(20), unfound=store.unfound_searches(30),
            batches=store.batch_count(),
        )

    @app.errorhandler(HTTPException)
    def refused(e: HTTPException):
        """The API answers refusals as the box's API does, in JSON a box's agent can read (the
        dashboard keeps Flask's page)."""
        if not request.path.startswith("/api/"):
            return e
        response = jsonify(error=e.name, message=e.description, status=e.code)
        response.status_code = e.code or 500
        return response

    @app.after_request
    def headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        return response

    return app

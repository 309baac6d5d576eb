"""What a box offers other boxes (a van, a neighbour): the hub's endpoints, served from what it has.

    GET  /api/v1/releases                  the channels installed here and their versions
    GET  /releases/channels/<name>/latest  the installed version
    GET  /releases/channels/<name>/<version>/manifest.json(.minisig)   the signed files, as received
    GET  /releases/blobs/sha256/<hex>      files from the blob store (Range, ETag)
    POST /api/v1/batches                   another box's signed statistics batch, carried toward the hub
    GET  /api/v1/acks?box=<key>            the hub's signed acknowledgements this box carries

A peer is never trusted: whoever fetches from here checks signatures, versions and hashes exactly as
with the hub, and batches are accepted only with a valid box signature.
"""
from __future__ import annotations

import json
import re

from flask import Blueprint, Response, abort, jsonify, request, send_file, send_from_directory

from appliance.storage.atomic import free_bytes
from appliance.web.context import get_db, library_state
from appliance.web.errors import InsufficientStorage, bounded_body

bp = Blueprint("peer", __name__)

MAX_CARRIED_BYTES = 64 * 1024 * 1024  # batches carried for other boxes, all together
MAX_CARRIED_PER_BOX = 8 * 1024 * 1024  # for any one box key: junk from made-up keys cannot fill the rest
MAX_REGISTRATION_BYTES = 64 * 1024
SHA = re.compile(r"^[0-9a-f]{64}$")


def _installed() -> dict[str, int]:
    if "channels" not in get_db().table_names():
        return {}
    return {r[0]: r[1] for r in get_db().execute("SELECT name, version FROM channels WHERE version IS NOT NULL")}


@bp.get("/api/v1/releases")
def releases():
    settings = library_state().settings
    return jsonify(channels={name: {"version": v} for name, v in _installed().items()}, tree="/releases/",
                   role=settings.box_role, name=settings.box_name)


@bp.get("/releases/channels/<name>/latest")
def latest(name: str):
    version = _installed().get(name)
    if version is None:
        abort(404)
    return Response(f"{version}\n", mimetype="text/plain")


@bp.get("/releases/channels/<name>/<int:version>/<filename>")
def release_file(name: str, version: int, filename: str):
    from content_sync.protocol import releases as bundles

    if filename not in (bundles.MANIFEST, bundles.SIGNATURE) or not bundles.CHANNEL_NAME.match(name):
        abort(404)
    folder = library_state().settings.home / "releases" / "channels" / name / str(version)
    return send_from_directory(folder, filename, conditional=True, max_age=60)


@bp.get("/releases/blobs/sha256/<sha>")
def blob(sha: str):
    if not SHA.match(sha):
        abort(404)
    # Only the books of the releases installed here, and not those the librarian withdrew (hidden):
    # the blob store also holds covers, local imports and withdrawn books, which no manifest offers.
    offered = get_db().execute(
        "SELECT 1 FROM books b WHERE b.sha256 = ? AND b.hidden = 0 "
        "AND EXISTS (SELECT 1 FROM channel_items ci WHERE ci.book_id = b.id)", [sha]).fetchone()
    path = library_state().blobs.path(sha)
    if offered is None or not path.is_file():
        abort(404)
    return send_file(path, mimetype="application/octet-stream", conditional=True, etag=sha, max_age=86400)


@bp.post("/api/v1/batches")
def carry_batch():
    from content_sync.protocol import batches as statsbatch

    settings = library_state().settings
    outbox = settings.outbox_dir
    data = bounded_body(statsbatch.MAX_BATCH_BYTES)
    try:
        payload = statsbatch.verify_batch(data)
    except statsbatch.BatchInvalid as e:
        abort(400, str(e))
    pending = statsbatch.pending_batches(outbox)
    carried = sum(p.stat().st_size for p in pending)
    own = statsbatch.outbox_folder(outbox, payload["box"])
    for_this_box = sum(p.stat().st_size for p in pending if p.parent == own)
    reserve = settings.disk_reserve_mb * 1024 * 1024
    if (carried + len(data) > MAX_CARRIED_BYTES or for_this_box + len(data) > MAX_CARRIED_PER_BOX
            or free_bytes(settings.home) - len(data) < reserve):
        raise InsufficientStorage("this box carries as many batches as it can")
    statsbatch.keep_carried(outbox, payload, data)  # verified above, with the room checked
    return jsonify(carried=True, box=payload["box"], batch=payload["batch"])


@bp.post("/api/v1/boxes")
def carry_registration():
    """A box's signed registration, carried with its batches so the hub knows the box."""
    from appliance.storage.atomic import atomic_write_bytes
    from content_sync.protocol import batches as statsbatch
    from content_sync.protocol.registration import check_registration

    data = bounded_body(MAX_REGISTRATION_BYTES)
    try:
        registration = check_registration(json.loads(data))
    except (ValueError, RecursionError) as e:  # json's errors too; RecursionError: nested too deep
        abort(403, str(e))
    folder = statsbatch.outbox_folder(library_state().settings.outbox_dir, registration.box)
    kept = folder / "registration.json"
    try:
        newer = check_registration(json.loads(kept.read_bytes())).counter >= registration.counter
    except (OSError, ValueError, RecursionError):
        newer = False
    if not newer:  # a replay of an older registration does not replace the newest carried
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(kept, data)
    return jsonify(carried=True, stale=newer)


@bp.get("/api/v1/acks")
def acks():
    from content_sync.protocol import batches as statsbatch

    wanted = request.args.get("box", "")
    known = statsbatch.load_acks(library_state().settings.outbox_dir)
    rows = [{"box": box, "batch": int(batch), "signature": signature}
            for box, batches in known.items() if not wanted or box == wanted
            for batch, signature in batches.items()]
    return jsonify(ack=rows[:10_000])

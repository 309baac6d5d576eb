"""This box's signed registration: what it tells the hub (directly, or through a van) of itself."""
from __future__ import annotations

from appliance.settings import Settings
from appliance.storage.atomic import atomic_write_text, free_bytes
from appliance.storage.db import catalog_session, next_seq
from content_sync.protocol import batches as statsbatch
from content_sync.protocol.registration import sign_registration
from content_sync.sync import apply

COUNTER = "registration"  # the catalog's counter of this box's registrations
ENROLLMENT = "hub-enrollment"  # in the keys folder: the token the hub issued for this box


def enrollment_token(settings: Settings) -> str:
    try:
        return (settings.keys_dir / ENROLLMENT).read_text().strip()
    except FileNotFoundError:
        return ""


def keep_enrollment_token(settings: Settings, token: str) -> None:
    """Keep the token the central office gave for this box (``library sync enroll``), owner-only."""
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.keys_dir / ENROLLMENT, token.strip() + "\n", mode=0o600)


def box_registration(settings: Settings) -> dict:
    """This box's registration and status, signed by its key, with the next value of its counter."""
    key = statsbatch.load_box_key(settings.keys_dir)
    with catalog_session(settings.db_path) as db:
        channels = {r["name"]: r["version"] for r in apply.channel_rows(db) if r["version"] is not None}
        with db.atomic():
            counter = next_seq(db, COUNTER)
    status = {"channels": channels, "disk_free_mb": free_bytes(settings.home) // (1024 * 1024),
              "pending_batches": len(statsbatch.pending_batches(settings.outbox_dir)),
              "role": settings.box_role}
    return sign_registration(key.private, key.public_b64, settings.box_name, status, counter,
                             enrollment_token(settings))

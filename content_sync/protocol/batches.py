"""Statistics batches: what leaves a box about its use, signed by the box, kept until acknowledged.

A batch file (``outbox/<box>/<counter>.json``, ``<box>`` being the first 16 hex digits of the
SHA-256 of the box's public key) is a small envelope::

    {"format": 1, "box": "<box public key, base64>", "batch": 7,
     "payload": "<the batch as a JSON string>", "signature": "<Ed25519 signature of payload, base64>"}

and the payload::

    {"format": 1, "box": "<public key>", "batch": 7, "box_name": "...",
     "clock_trusted": true,
     "days": ["2026-11-23", "2026-11-24"],            # days covered ("" = days not yet known)
     "books": [{"day": "2026-11-24", "kind": "view", "sha256": "...", "title": "...",
                "language": "vi", "count": 12}],
     "searches": [{"day": "2026-11-24", "term": "truyen kieu", "found": true, "count": 14}],
     "hours": [{"day": "2026-11-24", "hour": 19, "count": 40}]}

Only counts leave: no address, user agent, cookie or account ever reaches the catalog, let alone a
batch; a search term leaves only once it has been searched at least ``k`` times on this box
(``LIBRARY_STATS_MIN_TERM_COUNT``, 10 by default), until then its counts wait on the box. The batch
counter is per box and never reused, so the hub stores each (box, batch) once however often it is
uploaded, directly or through a van. A box drops a batch when the hub's acknowledgement arrives.
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.storage.atomic import atomic_write_bytes, fsync_dir
from appliance.storage.db import get_setting, next_seq, put_setting
from appliance.storage.keys import box_key, public_b64
from appliance.storage.locks import FileLock

logger = logging.getLogger(__name__)

FORMAT = 1
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ROWS = 20_000  # per batch; more waits for the next one
MAX_COUNT = 2**40  # far beyond what a box counts in a batch, well within SQLite's integers
EXPORT_LOCK = "export.lock"  # in the outbox
EXPORT_WAIT_SECONDS = 60.0  # an export takes well under a second


class BatchInvalid(Exception):
    """A batch is malformed or its signature does not verify."""


@dataclass(frozen=True)
class BoxKey:
    private: Ed25519PrivateKey
    public_b64: str

    @property
    def box_id(self) -> str:
        return box_folder_name(self.public_b64)


def box_folder_name(public_b64: str) -> str:
    return hashlib.sha256(public_b64.encode("ascii")).hexdigest()[:16]


def load_box_key(keys_dir: Path) -> BoxKey:
    """This box's key pair (made at first start; made here if missing)."""
    try:
        private = box_key(keys_dir)
    except ValueError as e:
        raise BatchInvalid(str(e)) from None
    return BoxKey(private, public_b64(private))


def sign_payload(payload: dict, key: BoxKey) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    signature = key.private.sign(text.encode("utf-8"))
    envelope = {"format": FORMAT, "box": key.public_b64, "batch": payload["batch"], "payload": text,
                "signature": base64.b64encode(signature).decode("ascii")}
    return (json.dumps(envelope, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def verify_batch(data: bytes, expected_box: str | None = None) -> dict:
    """The payload of a batch whose signature verifies against the box key it names (and, when
    given, that is ``expected_box``). Raises BatchInvalid otherwise."""
    if len(data) > MAX_BATCH_BYTES:
        raise BatchInvalid("the batch is too large")
    try:
        envelope = json.loads(data.decode("utf-8"))
        box, text, signature = envelope["box"], envelope["payload"], base64.b64decode(envelope["signature"])
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(box, validate=True))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise BatchInvalid(f"the batch is malformed: {e}") from None
    if expected_box is not None and box != expected_box:
        raise BatchInvalid("the batch was signed by another box than it claims")
    try:
        key.verify(signature, text.encode("utf-8"))
    except InvalidSignature:
        raise BatchInvalid("the batch's signature does not verify") from None
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise BatchInvalid(f"the batch's contents are not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise BatchInvalid("the batch's contents are not a JSON object")
    if envelope.get("format") != FORMAT or payload.get("format") != FORMAT:
        raise BatchInvalid(f"unknown batch format {payload.get('format')!r}")
    if payload.get("box") != box or payload.get("batch") != envelope.get("batch") \
            or not _whole(payload.get("batch"), 2**63 - 1):
        raise BatchInvalid("the batch's envelope and contents disagree")
    _check_rows(payload)
    return payload


def _whole(value, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _check_rows(payload: dict) -> None:
    """The counts' lists as a box writes them (a box signs what it sends, but a box's bug must not
    reach the hub's tables: a count SQLite cannot hold, a row that is not an object)."""
    days = payload.get("days", [])
    if not isinstance(days, list) or not all(isinstance(day, str) for day in days):
        raise BatchInvalid("the batch's days are not a list of texts")
    for part in ("books", "searches", "hours"):
        rows = payload.get(part, [])
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise BatchInvalid(f"the batch's {part} are not a list of objects")
        for row in rows:
            if not _whole(row.get("count", 0), MAX_COUNT):
                raise BatchInvalid(f"a count of the batch's {part} is not a count: {row.get('count')!r}")
            if any(not isinstance(row.get(name, ""), str) for name in ("day", "kind", "sha256", "title", "language",
                                                                       "term")):
                raise BatchInvalid(f"a row of the batch's {part} has a text that is not a string")


def outbox_folder(outbox: Path, public_b64: str) -> Path:
    return outbox / box_folder_name(public_b64)


def export_batch(db: sqlite_utils.Database, outbox: Path, key: BoxKey, *, min_term_count: int = 10,
                 box_name: str = "") -> Path | None:
    """Put every count not yet exported into a new signed batch in the outbox; None when nothing is new.

    The batch file is written before the counts are marked as exported; a crash between the two is
    repaired by ``reconcile`` (run first), so no count is sent twice under two batch numbers. One
    export at a time per box (the agent, a van's visit, ``library stats export`` are processes of
    their own): two reading the same counts before either marked them sent them twice.
    """
    outbox.mkdir(parents=True, exist_ok=True)
    lock = FileLock(outbox / EXPORT_LOCK)
    if not lock.acquire(EXPORT_WAIT_SECONDS):
        raise TimeoutError(f"another process kept {outbox / EXPORT_LOCK} for {EXPORT_WAIT_SECONDS} s")
    try:
        return _export_batch(db, outbox, key, min_term_count=min_term_count, box_name=box_name)
    finally:
        lock.release()


def _export_batch(db: sqlite_utils.Database, outbox: Path, key: BoxKey, *, min_term_count: int,
                  box_name: str) -> Path | None:
    reconcile(db, outbox, key)
    rare = {t for (t,) in db.execute(
        "SELECT term FROM stats_counts WHERE kind = 'search' GROUP BY term HAVING sum(count) < ?", [min_term_count])}
    rows = [r for r in db.query(
        "SELECT s.*, b.sha256 AS sha256, b.title AS title, b.language AS language FROM stats_counts s "
        "LEFT JOIN books b ON b.id = s.book_id WHERE s.count > s.exported ORDER BY s.seq, s.id LIMIT ?", [MAX_ROWS])
        if not (r["kind"] == "search" and r["term"] in rare)]
    if not rows:
        return None
    with db.atomic():
        counter = next_seq(db, "stats_batches")
    trusted = get_setting(db, "clock_trusted_boot") is not None
    books, searches = [], []
    hours: dict[tuple[str, int], int] = {}
    marks = []
    for r in rows:
        delta = r["count"] - r["exported"]
        marks.append([r["id"], r["count"]])
        if r["hour"] >= 0:
            hours[(r["day"], r["hour"])] = hours.get((r["day"], r["hour"]), 0) + delta
        if r["kind"] == "search":
            searches.append({"day": r["day"], "term": r["term"], "found": bool(r["found"] == 1), "count": delta})
        elif r["sha256"]:
            books.append({"day": r["day"], "kind": r["kind"], "sha256": r["sha256"], "title": r["title"],
                          "language": r["language"], "count": delta})
    payload = {
        "format": FORMAT, "box": key.public_b64, "batch": counter, "box_name": box_name,
        "clock_trusted": trusted,
        "days": sorted({r["day"] for r in rows}),
        "books": books, "searches": searches,
        "hours": [{"day": d, "hour": h, "count": n} for (d, h), n in sorted(hours.items())],
    }
    folder = outbox_folder(outbox, key.public_b64)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{counter:08d}.json"
    atomic_write_bytes(path, sign_payload(payload, key))
    # The marks travel beside the batch (never uploaded) so a crash before the update can be repaired.
    atomic_write_bytes(folder / f"{counter:08d}.marks", json.dumps(marks).encode())
    _apply_marks(db, counter, marks)
    return path


def _apply_marks(db: sqlite_utils.Database, counter: int, marks: list[list[int]]) -> None:
    with db.atomic():
        for row_id, count in marks:
            db.execute("UPDATE stats_counts SET exported = max(exported, ?) WHERE id = ?", [count, row_id])
        put_setting(db, "stats_marked_batch", str(counter))


def reconcile(db: sqlite_utils.Database, outbox: Path, key: BoxKey) -> None:
    """Apply the marks of batches written but not recorded as exported (a crash in between)."""
    folder = outbox_folder(outbox, key.public_b64)
    marked = int(get_setting(db, "stats_marked_batch", "0") or 0)
    for marks_path in sorted(folder.glob("*.marks")) if folder.is_dir() else []:
        counter = int(marks_path.stem)
        if counter > marked and (folder / f"{counter:08d}.json").exists():
            _apply_marks(db, counter, json.loads(marks_path.read_text()))


def pending_batches(outbox: Path) -> list[Path]:
    """Every batch waiting in the outbox, this box's and those carried for other boxes."""
    if not outbox.is_dir():
        return []
    return sorted(p for p in outbox.glob("*/*.json") if p.stem.isdigit())


def acknowledge(outbox: Path, public_b64: str, counter: int) -> bool:
    """The hub has the batch: drop it (and its marks). True when something was removed."""
    folder = outbox_folder(outbox, public_b64)
    removed = False
    for suffix in (".json", ".marks"):
        path = folder / f"{int(counter):08d}{suffix}"
        if path.exists():
            path.unlink()
            removed = True
    if removed:
        fsync_dir(folder)
    return removed


# -- carrying batches for other boxes, and the hub's acknowledgements ----------------------------


def ack_message(box: str, batch: int) -> bytes:
    return f"library-hub-ack:{box}:{int(batch)}".encode()


CARRIER_HEADER = "X-Carried-By"  # the carrying box's public key (base64)
CARRIER_SIGNATURE_HEADER = "X-Carrier-Signature"  # its signature over ``carrier_message``


def carrier_message(batch: bytes) -> bytes:
    """What a box that carries another's batch to the hub signs: the batch's hash."""
    return b"library-carried:" + hashlib.sha256(batch).hexdigest().encode("ascii")


def carrier_headers(key: BoxKey, batch: bytes) -> dict[str, str]:
    """The headers by which a carrying box (a van) says, checkably, that it carried ``batch``."""
    signature = base64.b64encode(key.private.sign(carrier_message(batch))).decode("ascii")
    return {CARRIER_HEADER: key.public_b64, CARRIER_SIGNATURE_HEADER: signature}


def verified_carrier(batch: bytes, carrier: str, signature: str) -> str:
    """The carrier's key when ``signature`` is its signature over the batch, else "" (a bare or
    forged claim counts as nobody)."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(carrier, validate=True))
        public.verify(base64.b64decode(signature, validate=True), carrier_message(batch))
    except (ValueError, TypeError, InvalidSignature):
        return ""
    return carrier


def carry(outbox: Path, data: bytes) -> dict:
    """Keep another box's batch (verified) to pass it on toward the hub. Returns its payload."""
    payload = verify_batch(data)
    keep_carried(outbox, payload, data)
    return payload


def keep_carried(outbox: Path, payload: dict, data: bytes) -> None:
    """Keep a batch ``verify_batch`` passed (``payload`` is what it returned for ``data``), unless it
    is kept already or the hub has acknowledged it."""
    folder = outbox_folder(outbox, payload["box"])
    path = folder / f"{payload['batch']:08d}.json"
    if not path.exists() and not is_acknowledged(outbox, payload["box"], payload["batch"]):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)


def _acks_path(outbox: Path) -> Path:
    return outbox / "acks.json"


def load_acks(outbox: Path) -> dict[str, dict[str, str]]:
    """Hub-signed acknowledgements this box knows: {box: {batch: signature}}."""
    try:
        return json.loads(_acks_path(outbox).read_text())
    except (OSError, ValueError):
        return {}


def is_acknowledged(outbox: Path, box: str, batch: int) -> bool:
    return str(int(batch)) in load_acks(outbox).get(box, {})


def remember_acks(outbox: Path, acks: list[dict], hub_public_b64: str | None) -> int:
    """Keep hub-signed acks (checked with the hub's key when known) and drop the batches they cover."""
    known = load_acks(outbox)
    added = 0
    for ack in acks:
        try:
            box, batch, signature = str(ack["box"]), int(ack["batch"]), str(ack["signature"])
        except (KeyError, TypeError, ValueError):
            continue
        if hub_public_b64 is not None and not verify_ack(box, batch, signature, hub_public_b64):
            logger.warning("ignored an acknowledgement for %s/%s: not signed by the hub", box[:8], batch)
            continue
        if str(batch) not in known.setdefault(box, {}):
            known[box][str(batch)] = signature
            added += 1
        acknowledge(outbox, box, batch)
    if added:
        outbox.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(_acks_path(outbox), json.dumps(known).encode())
    return added


def verify_ack(box: str, batch: int, signature: str, hub_public_b64: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(hub_public_b64, validate=True))
        key.verify(base64.b64decode(signature, validate=True), ack_message(box, batch))
    except (ValueError, InvalidSignature, TypeError):
        return False
    return True

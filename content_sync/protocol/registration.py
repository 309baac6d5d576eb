"""What a box says of itself to the hub (its registration) and the hub's signed time, as signed bytes.

A registration is ``{"box", "name", "status", "counter", "signature"}``: the box's public key
(base64), its name and status, and its registration counter, signed by the box's key over
``registration_message``. The counter grows with every registration the box makes, so a hub (or a
van carrying registrations) keeps the newest and a replayed or late one changes nothing. The hub's time is
``{"time", "signature"}``, signed by the hub's key over ``time_message``. No web framework here: the
hub, the box's peer pages and the sync agent all use these.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_NAME_CHARS = 200
MAX_TOKEN_CHARS = 100
MAX_COUNTER = 2**53  # JSON numbers stay exact below this
MAX_MB = 10**9  # a petabyte: more is not a disk
MAX_BATCHES = 10**7
MAX_CHANNELS = 1000
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # as content_sync.protocol.releases names them
ROLES = ("village", "van")


@dataclass(frozen=True)
class Registration:
    box: str  # the box's public key, base64
    name: str
    status: dict  # checked: see ``check_status``
    counter: int  # the box's registration counter: a registration with a lower one is stale
    enrollment: str = ""  # the token the hub issued for this box (``library hub enroll``), if any


def registration_message(box: str, name: str, status: dict, counter: int, enrollment: str = "") -> bytes:
    return json.dumps({"box": box, "name": name, "status": status, "counter": counter, "enrollment": enrollment},
                      sort_keys=True, ensure_ascii=False).encode()


def sign_registration(private: Ed25519PrivateKey, box: str, name: str, status: dict, counter: int,
                      enrollment: str = "") -> dict:
    """A registration ready to send: ``check_registration`` of it gives these values back. The
    enrollment token is signed with the rest, so a van that carries it cannot move it to another key."""
    signature = private.sign(registration_message(box, name, status, counter, enrollment))
    return {"box": box, "name": name, "status": status, "counter": counter, "enrollment": enrollment,
            "signature": base64.b64encode(signature).decode("ascii")}


def _whole(value: object, highest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= highest


def check_status(status: dict) -> dict:
    """The status a box reports, each value of the type the hub's pages expect; ValueError otherwise
    (a ``"disk_free_mb": "x"`` once made the hub's dashboard a 500). Keys not known here are left out."""
    checked: dict = {}
    channels = status.get("channels", {})
    if not isinstance(channels, dict) or len(channels) > MAX_CHANNELS or not all(
            isinstance(k, str) and CHANNEL_NAME.match(k) and _whole(v, MAX_COUNTER) for k, v in channels.items()):
        raise ValueError("status.channels must map channel names to versions")
    checked["channels"] = channels
    for key, highest in (("disk_free_mb", MAX_MB), ("pending_batches", MAX_BATCHES)):
        if key in status:
            if not _whole(status[key], highest):
                raise ValueError(f"status.{key} must be a whole number from 0 to {highest}")
            checked[key] = status[key]
    if "role" in status:
        if status["role"] not in ROLES:
            raise ValueError("status.role must be village or van")
        checked["role"] = status["role"]
    return checked


def check_registration(body: object) -> Registration:
    """The registration in ``body``, signed by the box's key it names, with a status of the right
    types; ValueError otherwise."""
    if not isinstance(body, dict):
        raise ValueError("a registration is a JSON object")
    box, name, status, counter = body.get("box"), body.get("name", ""), body.get("status", {}), body.get("counter")
    enrollment = body.get("enrollment", "")
    if not isinstance(box, str) or not isinstance(name, str) or not isinstance(status, dict):
        raise ValueError("box, name and status are needed")
    if not isinstance(enrollment, str) or len(enrollment) > MAX_TOKEN_CHARS:
        raise ValueError("an enrollment token is a short text")
    if not _whole(counter, MAX_COUNTER) or counter < 1:
        raise ValueError("a registration carries its box's counter, a whole number from 1")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a box's name has at most {MAX_NAME_CHARS} characters")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(box, validate=True))
        public.verify(base64.b64decode(body.get("signature", ""), validate=True),
                      registration_message(box, name, status, counter, enrollment))
    except (ValueError, InvalidSignature, TypeError):
        raise ValueError("the registration is not signed by that box key") from None
    return Registration(box, name, check_status(status), counter, enrollment)


def time_message(moment: float) -> bytes:
    return f"library-hub-time:{moment:.3f}".encode()


def verify_time(answer: dict, hub_public_b64: str) -> float:
    """The time in a hub's answer, if its signature verifies with the hub's key; ValueError otherwise."""
    try:
        moment = float(answer["time"])
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(hub_public_b64, validate=True))
        public.verify(base64.b64decode(answer["signature"], validate=True), time_message(moment))
    except (KeyError, ValueError, TypeError, InvalidSignature):
        raise ValueError("the hub's time is not signed by the hub's key") from None
    return moment

"""Meeting another box (a van, a neighbour): releases flow to the older side, statistics toward the hub.

``exchange`` runs on the box that found the peer (by zeroconf or by address):

1. it asks the peer which releases it has and installs any newer release of a channel it follows,
   fetched from the peer with every check of ``content_sync.sync.apply`` (a peer is not trusted: a
   tampered or older release is refused exactly as from the hub);
2. when the peer is a van, it hands the van its statistics batches (its own and any it carries), to be
   taken to the hub; it keeps them until the hub's acknowledgement comes back;
3. it asks the peer for the hub's signed acknowledgements of its batches and drops those batches.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request

import sqlite_utils

from appliance.discovery import Peer
from appliance.messages import N_
from appliance.settings import Settings
from appliance.storage.atomic import NotEnoughDisk
from content_sync.protocol import batches as statsbatch
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.sync import apply
from content_sync.sync.registration import box_registration
from content_sync.sync.sources import SourceError, link_failure
from content_sync.sync.transfer import Downloader, HttpReleaseSource, LinkPolicy

logger = logging.getLogger(__name__)

TIMEOUT = 30


def _get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return json.loads(answer.read(4 * 1024 * 1024))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SourceError(N_("cannot ask %(url)s: %(detail)s"), url=url, detail=link_failure(e)) from None


def _post(url: str, data: bytes) -> None:
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        answer.read()


def exchange(settings: Settings, db: sqlite_utils.Database, peer: Peer, *, policy: LinkPolicy | None = None,
             hub_key: str | None = None) -> list[str]:
    """Everything this box does with ``peer`` at one meeting; returns one line per thing done."""
    done: list[str] = []
    about = _get_json(peer.base_url + "/api/v1/releases")
    offered = about.get("channels", {})
    # What the peer says it is: a van known only by address (LIBRARY_PEERS) is a van all the same.
    # Its word is enough here: whatever it carries is signed by the boxes, and checked at the hub.
    role = about.get("role") if about.get("role") in ("van", "village") else peer.role
    for channel in apply.subscribed_channels(db):
        version = (offered.get(channel) or {}).get("version")
        installed = apply.installed_version(db, channel)
        if not isinstance(version, int) or (installed is not None and version <= installed):
            continue
        source = HttpReleaseSource(Downloader(peer.base_url + "/releases/", policy or LinkPolicy()))
        try:
            result = apply.apply_release(settings, db, source, channel)
            done.append(f"from {peer.name}: " + apply.describe(result))
        except apply.InstallBusy as e:
            done.append(f"{channel} from {peer.name} left for later: {e}")
        except (bundles.BundleError, NotEnoughDisk, minisign.SignatureError, SourceError) as e:
            logger.warning("refused %s from peer %s: %s", channel, peer.name, e)
            done.append(f"refused {channel} from {peer.name}: {e}")
    key = statsbatch.load_box_key(settings.keys_dir)
    if settings.box_role == "van":
        pass  # a van carries statistics; it hands them to the hub, not to another box
    elif role != "van":
        done.append(f"statistics wait for a van: {peer.name} is a village box")
    else:
        statsbatch.export_batch(db, settings.outbox_dir, key, min_term_count=settings.stats_min_term_count,
                                box_name=settings.box_name)
        try:
            _post(peer.base_url + "/api/v1/boxes", json.dumps(box_registration(settings)).encode())
        except (urllib.error.URLError, OSError) as e:
            logger.warning("%s does not carry statistics (%s)", peer.name, e)
            return done + [f"{peer.name} does not carry statistics"]
        handed = 0
        for path in statsbatch.pending_batches(settings.outbox_dir):
            request = urllib.request.Request(peer.base_url + "/api/v1/batches", data=path.read_bytes(), method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                    answer.read()
                handed += 1
            except (urllib.error.URLError, OSError) as e:
                logger.warning("could not hand a batch to %s: %s", peer.name, e)
        done.append(f"{handed} statistics batch(es) handed to {peer.name}")
    if hub_key:
        acks = _get_json(f"{peer.base_url}/api/v1/acks?box={urllib.parse.quote(key.public_b64)}").get("ack", [])
        dropped = statsbatch.remember_acks(settings.outbox_dir, acks, hub_key)
        if dropped:
            done.append(f"{dropped} batch(es) confirmed by the hub, through {peer.name}")
    return done or [f"nothing to exchange with {peer.name}"]

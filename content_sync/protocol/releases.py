"""Channel releases: the signed tree central staff publish and every box, van and USB stick carries.

Layout of a release tree (a folder, a USB stick, or the same files over HTTP)::

    channels/<name>/latest                     the newest version number (a hint; not trusted)
    channels/<name>/<version>/manifest.json    the release, canonical JSON
    channels/<name>/<version>/manifest.json.minisig   its minisign signature (content_sync.protocol.minisign)
    blobs/sha256/<hex>                         every file, named by its SHA-256, shared by all channels

Manifest (``format`` 1)::

    {"format": 1, "channel": "vi-literature", "version": 3, "previous": 2,
     "items": [{"id": "nam-cao/chi-pheo", "sha256": "...", "size": 123456,
                "media_type": "application/epub+zip",
                "metadata": {"title": "...", "authors": [...], "language": "vi", "subjects": [...],
                             "description": "...", "publisher": "...", "date": "...", "identifier": "..."}}],
     "removed": ["ids", "gone", "since", "version 2"]}

An item id names a book across versions (its path under the source folder, without ``.epub``):
lowercase letters, digits, ``.``, ``_``, ``-`` and single ``/`` between parts; nothing that could
climb out of a folder. The signature's trusted comment is ``channel:<name> version:<n> format:1``.
This module owns the format; ``content_sync.sync.apply`` installs releases on a box.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.messages import N_, SaidError
from appliance.storage.blobs import is_sha256, sha256_file
from appliance.storage.keys import valid_public_key
from content_sync.protocol import minisign

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.minisig"
LATEST = "latest"
EPUB_TYPE = "application/epub+zip"
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
ITEM_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}(/[a-z0-9][a-z0-9._-]{0,99}){0,3}$")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class BundleError(SaidError):
    """A release is refused; ``str(e)`` names the check and the file in one sentence."""


class UnknownFormat(BundleError):
    pass


class ManifestInvalid(BundleError):
    pass


class UnsafeItemId(BundleError):
    pass


@dataclass(frozen=True)
class Item:
    id: str
    sha256: str
    size: int
    media_type: str
    metadata: dict


@dataclass(frozen=True)
class Release:
    channel: str
    version: int
    previous: int | None
    items: tuple[Item, ...]
    removed: tuple[str, ...]
    manifest_bytes: bytes
    signature_text: str
    hub_key: str | None = None  # the hub's public key, named by the publisher for boxes that lack it

    @property
    def manifest_sha256(self) -> str:
        import hashlib

        return hashlib.sha256(self.manifest_bytes).hexdigest()


def check_channel_name(name: str) -> str:
    if not CHANNEL_NAME.match(name or ""):
        raise BundleError(N_("The channel name “%(name)s” is not allowed: use lowercase letters, digits and dashes."),
                          name=name)
    return name


def manifest_path(channel: str, version: int) -> str:
    return f"channels/{channel}/{version}/{MANIFEST}"


def signature_path(channel: str, version: int) -> str:
    return f"channels/{channel}/{version}/{SIGNATURE}"


def latest_path(channel: str) -> str:
    return f"channels/{channel}/{LATEST}"


def blob_path(sha256: str) -> str:
    return f"blobs/sha256/{sha256}"


def canonical(manifest: dict) -> bytes:
    return (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8")


def trusted_comment(channel: str, version: int) -> str:
    return f"channel:{channel} version:{version} format:{FORMAT}"


def parse_release(manifest_bytes: bytes, signature_text: str, keys: list[minisign.PublicKey], *,
                  channel: str, version: int | None = None) -> Release:
    """Verify and read a release. Checks the signature first, then the format, then every field."""
    where = manifest_path(channel, version) if version is not None else f"channels/{channel}/{MANIFEST}"
    try:
        comment = minisign.verify(manifest_bytes, signature_text, keys)
    except minisign.UnknownKey as e:
        raise minisign.UnknownKey(N_("%(where)s: %(detail)s"), where=where, detail=e.message) from None
    except minisign.SignatureError as e:
        raise minisign.SignatureInvalid(N_("%(where)s: signature check failed: %(detail)s"), where=where,
                                        detail=e.message) from None
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestInvalid(N_("%(where)s is not valid JSON: %(detail)s"), where=where, detail=str(e)) from None
    if not isinstance(manifest, dict):
        raise ManifestInvalid(N_("%(where)s is not a JSON object"), where=where)
    if manifest.get("format") != FORMAT:
        raise UnknownFormat(N_("%(where)s has format %(format)r; this box knows format %(known)d"), where=where,
                            format=manifest.get("format"), known=FORMAT)
    got_channel, got_version = manifest.get("channel"), manifest.get("version")
    if got_channel != channel or not isinstance(got_version, int) or got_version < 1 \
            or (version is not None and got_version != version):
        raise ManifestInvalid(N_("%(where)s describes channel %(channel)r version %(version)r, not what it is filed as"),
                              where=where, channel=got_channel, version=got_version)
    if comment != trusted_comment(channel, got_version):
        raise ManifestInvalid(N_("%(where)s: the signed comment %(comment)r does not name this release"), where=where,
                              comment=comment)
    items = []
    seen: set[str] = set()
    for raw in manifest.get("items", []):
        item = _item(raw, where)
        if item.id in seen:
            raise ManifestInvalid(N_("%(where)s lists item %(item)r twice"), where=where, item=item.id)
        seen.add(item.id)
        items.append(item)
    removed = manifest.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
        raise ManifestInvalid(N_("%(where)s: 'removed' must be a list of item ids"), where=where)
    for item_id in removed:
        check_item_id(item_id, where)
    previous = manifest.get("previous")
    hub_key = manifest.get("hub_key")
    if hub_key is not None and not (isinstance(hub_key, str) and valid_public_key(hub_key)):
        raise ManifestInvalid(N_("%(where)s: 'hub_key' is not an Ed25519 public key"), where=where)
    return Release(channel, got_version, previous if isinstance(previous, int) else None, tuple(items),
                   tuple(removed), manifest_bytes, signature_text, hub_key)


def check_item_id(item_id: object, where: str) -> str:
    if not isinstance(item_id, str) or not ITEM_ID.match(item_id) or ".." in item_id.split("/"):
        raise UnsafeItemId(N_("%(where)s: item id %(item)r is not allowed (it could name a path outside the library)"),
                           where=where, item=item_id)
    return item_id


def _item(raw: object, where: str) -> Item:
    if not isinstance(raw, dict):
        raise ManifestInvalid(N_("%(where)s: an item is not a JSON object"), where=where)
    item_id = check_item_id(raw.get("id"), where)
    sha, size = raw.get("sha256"), raw.get("size")
    if not isinstance(sha, str) or not is_sha256(sha):
        raise ManifestInvalid(N_("%(where)s: item %(item)r has no valid sha256"), where=where, item=item_id)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(N_("%(where)s: item %(item)r has no valid size"), where=where, item=item_id)
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict) or not isinstance(metadata.get("title", ""), str):
        raise ManifestInvalid(N_("%(where)s: item %(item)r has malformed metadata"), where=where, item=item_id)
    return Item(item_id, sha, size, str(raw.get("media_type") or EPUB_TYPE), metadata)


# -- building (central staff) -------------------------------------------------------------------


def read_tree_release(tree: Path, channel: str, version: int, keys: list[minisign.PublicKey]) -> Release:
    folder = tree / "channels" / channel / str(version)
    return parse_release((folder / MANIFEST).read_bytes(), (folder / SIGNATURE).read_text(encoding="utf-8"), keys,
                         channel=channel, version=version)


def tree_versions(tree: Path, channel: str) -> list[int]:
    folder = tree / "channels" / channel
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / SIGNATURE).is_file())


def verify_tree(tree: Path, channel: str, keys: list[minisign.PublicKey],
                versions: Iterable[int] | None = None) -> list[str]:
    """Check releases of ``channel`` in ``tree`` (all versions by default): signatures and every blob.
    Returns the problems found, one sentence each (empty when all is well)."""
    problems = []
    for version in (versions or tree_versions(tree, channel)):
        try:
            release = read_tree_release(tree, channel, version, keys)
        except (BundleError, minisign.SignatureError, OSError) as e:
            problems.append(str(e))
            continue
        for item in release.items:
            path = tree / blob_path(item.sha256)
            if not path.is_file():
                problems.append(f"{blob_path(item.sha256)} ({item.id}) is missing")
            elif path.stat().st_size != item.size:
                problems.append(f"{blob_path(item.sha256)} ({item.id}) has {path.stat().st_size} bytes, not {item.size}")
            elif sha256_file(path) != item.sha256:
                problems.append(f"{blob_path(item.sha256)} ({item.id}) does not match its SHA-256")
    if not tree_versions(tree, channel):
        problems.append(f"{tree} has no signed release of channel {channel!r}")
    return problems

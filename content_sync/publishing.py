"""Publishing: the next release of a channel made from a folder of books, signed (central staff).

The release format is content_sync.protocol.releases'; this module reads the books (the EPUB reader,
Pillow, the language guesser) to describe them, which the hub and the boxes never need to load.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.books.container import EpubUnreadable
from appliance.books.epub import read_epub
from appliance.messages import N_
from appliance.storage.atomic import atomic_write_bytes, atomic_write_text, fsync_dir
from appliance.storage.blobs import sha256_file
from appliance.storage.keys import valid_public_key
from appliance.textfold import fold
from content_sync.protocol import minisign
from content_sync.protocol.releases import (
    EPUB_TYPE,
    FORMAT,
    MANIFEST,
    SIGNATURE,
    BundleError,
    ManifestInvalid,
    canonical,
    check_channel_name,
    latest_path,
    read_tree_release,
    tree_versions,
    trusted_comment,
)


@dataclass(frozen=True)
class BuildReport:
    channel: str
    version: int
    items: int
    added: int
    updated: int
    removed: int
    new_blobs: int
    skipped: tuple[tuple[str, str], ...]  # (file, reason)


def item_id_for(path: Path, root: Path) -> str:
    """A stable id from the file's place under the source folder: ``Nam Cao/Chí Phèo.epub`` -> ``nam-cao/chi-pheo``."""
    parts = []
    for part in path.relative_to(root).with_suffix("").parts[-4:]:
        slug = re.sub(r"[^a-z0-9._-]+", "-", fold(part)).strip("-._")[:100] or "item"
        parts.append(slug)
    return "/".join(parts)


def build_release(source: Path, channel: str, key: minisign.SecretKey, tree: Path,
                  progress=None, hub_key: str | None = None) -> BuildReport:
    """Read every EPUB under ``source``, store new blobs in ``tree``, write and sign the next version.
    ``hub_key``: the hub's public key (base64), for boxes that were set up without it."""
    check_channel_name(channel)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() == ".epub")
    versions = tree_versions(tree, channel)
    previous = read_tree_release(tree, channel, versions[-1], [key.public]) if versions else None
    version = (versions[-1] if versions else 0) + 1
    blobs = tree / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    items: dict[str, dict] = {}
    skipped: list[tuple[str, str]] = []
    new_blobs = 0
    for path in files:
        if progress:
            progress(path)
        try:
            record = read_epub(path)
        except EpubUnreadable as e:
            skipped.append((str(path), str(e)))
            continue
        item_id = item_id_for(path, source)
        if item_id in items:
            skipped.append((str(path), f"another file already has the id {item_id!r}"))
            continue
        target = blobs / record.sha256
        if not target.exists():
            _copy_blob(path, target, record.sha256)
            new_blobs += 1
        items[item_id] = {
            "id": item_id, "sha256": record.sha256, "size": record.size, "media_type": EPUB_TYPE,
            "metadata": {"title": record.title, "authors": list(record.authors), "language": record.language,
                         "subjects": list(record.subjects), "description": record.description,
                         "publisher": record.publisher, "date": record.date, "identifier": record.identifier},
        }
    before = {i.id: i.sha256 for i in previous.items} if previous else {}
    removed = sorted(set(before) - set(items))
    manifest = {"format": FORMAT, "channel": channel, "version": version,
                "previous": previous.version if previous else None,
                "items": [items[k] for k in sorted(items)], "removed": removed}
    if hub_key:
        if not valid_public_key(hub_key):
            raise ManifestInvalid(N_("%(key)r is not the hub's Ed25519 public key"), key=hub_key[:60])
        manifest["hub_key"] = hub_key.strip()
    data = canonical(manifest)
    folder = tree / "channels" / channel / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / MANIFEST, data)
    atomic_write_text(folder / SIGNATURE, minisign.sign(data, key, trusted_comment(channel, version)))
    atomic_write_text(tree / latest_path(channel), f"{version}\n")
    return BuildReport(channel, version, len(items), len(set(items) - set(before)),
                       sum(1 for k in items if k in before and before[k] != items[k]["sha256"]), len(removed),
                       new_blobs, tuple(skipped))


def _copy_blob(source: Path, target: Path, sha256: str) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        dst.flush()
        os.fsync(dst.fileno())
    if sha256_file(tmp) != sha256:
        tmp.unlink()
        raise BundleError(N_("%(source)s changed while it was being copied"), source=str(source))
    tmp.replace(target)
    fsync_dir(target.parent)



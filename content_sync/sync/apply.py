"""Installing channel releases on a box: every check first, then one catalog transaction.

Order of the checks, before anything touches the catalog: the signature against the trusted
publisher keys, a known format, a version higher than the installed one (a rollback is refused and
logged), free disk for the new blobs plus the reserve, then each blob's size and SHA-256 as it
arrives. Blobs are written under ``staging/`` and moved into the blob store only once verified.
Then one transaction adds, updates and removes the books and records the new version: a power cut at
any instant leaves the old release or the new one. The search index follows from the index queue.
Blobs no longer referenced by any book are collected afterwards. One install at a time per box:
the sync agent's service, a sync a librarian started and a van's visit are separate processes,
and two of them fetching the same blobs into ``staging/`` spoiled each other's files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from appliance.books.container import EpubUnreadable
from appliance.books.epub import read_epub
from appliance.books.importer import record_to_new_book
from appliance.messages import N_
from appliance.settings import Settings
from appliance.storage import catalog
from appliance.storage.atomic import NotEnoughDisk, atomic_write_bytes, atomic_write_text, free_bytes
from appliance.storage.blobs import BlobStore, sha256_file
from appliance.storage.db import next_seq
from appliance.storage.keys import HUB_PUBLIC_KEY
from appliance.storage.locks import FileLock
from content_sync.protocol import minisign
from content_sync.protocol import releases as bundles
from content_sync.sync.sources import BlobTooLarge, BlobTruncated, ReleaseSource, SourceError

logger = logging.getLogger(__name__)

INSTALL_LOCK = "install.lock"  # in staging/
GC_GRACE_SECONDS = 600  # a blob younger than this may belong to an import still in progress


class InstallBusy(SourceError):
    """Another process of this box is installing releases now; try again later (nothing was done)."""


class RollbackRefused(bundles.BundleError):
    pass


class BlobHashMismatch(bundles.BundleError):
    pass


@dataclass
class ApplyResult:
    channel: str
    old_version: int | None
    new_version: int | None
    status: str  # "installed", "current"
    added: int = 0
    updated: int = 0
    removed: int = 0
    fetched_blobs: int = 0
    fetched_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


def trusted_keys(settings: Settings) -> list[minisign.PublicKey]:
    return minisign.load_public_keys(publisher_keys_dir(settings))


def publisher_keys_dir(settings: Settings) -> Path:
    return settings.keys_dir / "publishers"


def installed_version(db: sqlite_utils.Database, channel: str) -> int | None:
    row = db.execute("SELECT version FROM channels WHERE name = ?", [channel]).fetchone()
    return row[0] if row else None


def subscribed_channels(db: sqlite_utils.Database) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM channels WHERE subscribed = 1 ORDER BY name")]


def subscribe(db: sqlite_utils.Database, channel: str) -> None:
    bundles.check_channel_name(channel)
    with db.atomic():
        db.execute("INSERT INTO channels(name, subscribed) VALUES (?, 1) "
                   "ON CONFLICT(name) DO UPDATE SET subscribed = 1", [channel])


def unsubscribe(db: sqlite_utils.Database, channel: str) -> bool:
    """Stop following ``channel``; its books stay until a librarian removes them. False if unknown."""
    with db.atomic():
        cur = db.execute("UPDATE channels SET subscribed = 0 WHERE name = ?", [channel])
    return cur.rowcount > 0


def channel_rows(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query(
        "SELECT c.name, c.subscribed, c.version, c.manifest_sha256, "
        "(SELECT count(*) FROM channel_items i WHERE i.channel = c.name) AS books FROM channels c ORDER BY c.name"))


def release_files_dir(settings: Settings) -> Path:
    """Where a box keeps the signed files of its installed releases (re-served to peers)."""
    return settings.home / "releases"


def apply_release(settings: Settings, db: sqlite_utils.Database, source: ReleaseSource, channel: str, *,
                  keys: list[minisign.PublicKey] | None = None, gc: bool = True,
                  gc_grace_seconds: float = GC_GRACE_SECONDS) -> ApplyResult:
    """Install the newest release of ``channel`` offered by ``source``; refuse it with a BundleError
    (or minisign.SignatureError, SourceError) that says which check failed, leaving the box as it was.
    InstallBusy at once while another process installs releases."""
    bundles.check_channel_name(channel)
    settings.staging_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(settings.staging_dir / INSTALL_LOCK)
    if not lock.acquire(0):
        raise InstallBusy(N_("another process of this box (the sync agent, a sync a librarian started, a van's "
                             "visit) is installing releases; try again when it has finished"))
    try:
        return _apply_release(settings, db, source, channel, keys=keys, gc=gc, gc_grace_seconds=gc_grace_seconds)
    finally:
        lock.release()


def _apply_release(settings: Settings, db: sqlite_utils.Database, source: ReleaseSource, channel: str, *,
                   keys: list[minisign.PublicKey] | None, gc: bool, gc_grace_seconds: float) -> ApplyResult:
    keys = trusted_keys(settings) if keys is None else keys
    if not keys:
        raise minisign.UnknownKey(N_("this box trusts no publisher key yet: put one in %(folder)s"),
                                  folder=str(publisher_keys_dir(settings)))
    installed = installed_version(db, channel)
    latest_text = source.read(bundles.latest_path(channel), limit=32).decode("ascii", "replace").strip()
    if not latest_text.isdigit():
        raise SourceError(N_("%(where)s does not hold a version number"), where=source.where(bundles.latest_path(channel)))
    offered = int(latest_text)
    if installed is not None and offered == installed:
        return ApplyResult(channel, installed, installed, "current")
    manifest = source.read(bundles.manifest_path(channel, offered), limit=bundles.MAX_MANIFEST_BYTES)
    signature = source.read(bundles.signature_path(channel, offered), limit=4096).decode("utf-8", "replace")
    release = bundles.parse_release(manifest, signature, keys, channel=channel, version=offered)
    if installed is not None and release.version <= installed:
        logger.warning("refused %s version %d from %s: version %d is installed (rollback)",
                       channel, release.version, source.description, installed)
        raise RollbackRefused(N_("%(where)s is version %(version)d, but version %(installed)d is installed; going back "
                                 "is refused"), where=bundles.manifest_path(channel, release.version),
                              version=release.version, installed=installed)
    blobs = BlobStore(settings.blobs_dir)
    missing = {item.sha256: item for item in release.items if not blobs.exists(item.sha256)}
    needed = sum(item.size for item in missing.values())
    reserve = settings.disk_reserve_mb * 1024 * 1024
    settings.home.mkdir(parents=True, exist_ok=True)
    free = free_bytes(settings.home)
    if free - needed < reserve:
        raise NotEnoughDisk(N_("%(where)s needs %(needed)d MB of new files and %(reserve)d MB must stay free, but only "
                               "%(free)d MB are free"), where=bundles.manifest_path(channel, release.version),
                            needed=needed // (1024 * 1024) + 1, reserve=settings.disk_reserve_mb,
                            free=free // (1024 * 1024))
    result = ApplyResult(channel, installed, release.version, "installed")
    staging = settings.staging_dir / "blobs"
    staging.mkdir(parents=True, exist_ok=True)
    before = source.bytes_read
    verified: list[tuple[Path, str]] = []
    try:
        for sha, item in sorted(missing.items()):
            verified.append((_fetch_verified(source, staging, item, result), sha))
    except (bundles.BundleError, SourceError) as e:
        if not isinstance(e, SourceError) or isinstance(e, (BlobTooLarge, BlobTruncated)):
            for path, _sha in verified:  # a bad release: keep nothing of it
                path.unlink(missing_ok=True)
        raise
    result.fetched_bytes = source.bytes_read - before
    # Every file is verified: only now do they join the blob store.
    for path, sha in verified:
        blobs.adopt(path, sha)
    _keep_release_files(settings, release)
    _install(db, blobs, release, result)
    _keep_hub_key(settings, release)
    logger.info("installed %s version %d (was %s): %d added, %d updated, %d removed",
                channel, release.version, installed, result.added, result.updated, result.removed)
    if gc:
        collect_garbage(db, blobs, grace_seconds=gc_grace_seconds)
    return result


def _fetch_verified(source: ReleaseSource, staging: Path, item: bundles.Item, result: ApplyResult) -> Path:
    """The blob of ``item`` in ``staging``, fetched unless an earlier attempt left it verified there."""
    done = staging / item.sha256
    if done.is_file() and done.stat().st_size == item.size and sha256_file(done) == item.sha256:
        return done
    part = staging / f"{item.sha256}.part"
    try:
        got = source.fetch_blob(item.sha256, item.size, part)
    except SourceError as e:
        if isinstance(e, (BlobTooLarge, BlobTruncated)):
            part.unlink(missing_ok=True)
        raise  # a broken link keeps what arrived, for the next attempt to continue
    if got != item.sha256:
        part.unlink(missing_ok=True)
        raise BlobHashMismatch(N_("%(where)s (%(item)s) does not match the SHA-256 in the manifest"),
                               where=bundles.blob_path(item.sha256), item=item.id)
    part.replace(done)
    result.fetched_blobs += 1
    return done


def _keep_release_files(settings: Settings, release: bundles.Release) -> None:
    folder = release_files_dir(settings) / "channels" / release.channel / str(release.version)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / bundles.MANIFEST, release.manifest_bytes)
    atomic_write_text(folder / bundles.SIGNATURE, release.signature_text)


def _install(db: sqlite_utils.Database, blobs: BlobStore, release: bundles.Release, result: ApplyResult) -> None:
    """The one transaction: books in, books out, the version recorded."""
    with db.atomic():
        db.execute("INSERT INTO channels(name, subscribed) VALUES (?, 1) ON CONFLICT(name) DO NOTHING",
                   [release.channel])
        current = {r[0]: (r[1], r[2], r[3]) for r in db.execute(
            "SELECT item_id, book_id, sha256, metadata_sha256 FROM channel_items WHERE channel = ?", [release.channel])}
        wanted = {item.id: item for item in release.items}
        for item_id, item in wanted.items():
            old = current.get(item_id)
            metadata_sha = hashlib.sha256(bundles.canonical(item.metadata)).hexdigest()
            if old is not None and old[1] == item.sha256:
                if old[2] != metadata_sha:  # the same file, its metadata changed
                    if _apply_metadata(db, old[0], item.metadata):
                        result.updated += 1
                    db.execute("UPDATE channel_items SET metadata_sha256 = ? WHERE channel = ? AND item_id = ?",
                               [metadata_sha, release.channel, item_id])
                continue
            book_id = catalog.book_id_by_sha(db, item.sha256)
            if book_id is None:
                book_id = _add_book(db, blobs, release.channel, item, result)
            db.execute("INSERT INTO channel_items(channel, item_id, book_id, sha256, metadata_sha256) "
                       "VALUES (?, ?, ?, ?, ?) ON CONFLICT(channel, item_id) DO UPDATE SET book_id = excluded.book_id, "
                       "sha256 = excluded.sha256, metadata_sha256 = excluded.metadata_sha256",
                       [release.channel, item_id, book_id, item.sha256, metadata_sha])
            if old is None:
                result.added += 1
            else:
                result.updated += 1
                _drop_if_orphan(db, old[0])
        for item_id in set(current) - set(wanted):
            db.execute("DELETE FROM channel_items WHERE channel = ? AND item_id = ?", [release.channel, item_id])
            _drop_if_orphan(db, current[item_id][0])
            result.removed += 1
        db.execute("UPDATE channels SET version = ?, manifest_sha256 = ?, installed_seq = ? WHERE name = ?",
                   [release.version, release.manifest_sha256, next_seq(db, "releases"), release.channel])


def _add_book(db, blobs: BlobStore, channel: str, item: bundles.Item, result: ApplyResult) -> int:
    meta = item.metadata
    path = blobs.path(item.sha256)
    unreadable = None
    try:
        record = read_epub(path)
    except EpubUnreadable as e:
        result.warnings.append(f"{item.id}: {e}")
        record, unreadable = None, e.message
    if record is not None:
        cover = blobs.put_bytes(record.cover) if record.cover else None
        thumb = blobs.put_bytes(record.thumbnail) if record.thumbnail else None
        book = record_to_new_book(record, file_name=f"{item.id.rsplit('/', 1)[-1]}.epub", cover_sha=cover,
                                  thumb_sha=thumb, source=f"channel:{channel}")
    else:
        book = catalog.NewBook(sha256=item.sha256, size=item.size, title=str(meta.get("title") or item.id),
                               authors=(), language="", source=f"channel:{channel}",
                               file_name=f"{item.id.rsplit('/', 1)[-1]}.epub", warnings=(unreadable,))
    # The publisher's curated metadata wins over what the file says.
    return catalog.add_book(db, dataclasses.replace(book, **_publisher_metadata(meta)))


def _publisher_metadata(meta: dict) -> dict:
    """The catalog fields a release item's metadata sets (those it gives, well formed)."""
    overrides: dict = {}
    for key, field_name in (("title", "title"), ("language", "language"), ("description", "description"),
                            ("publisher", "publisher"), ("date", "published"), ("identifier", "identifier")):
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            overrides[field_name] = value.strip()
    for key in ("authors", "subjects"):
        value = meta.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            overrides[key] = tuple(v for v in value if v.strip())
    return overrides


def _apply_metadata(db, book_id: int, meta: dict) -> bool:
    """Give an installed book the metadata of a newer release of its item; True when anything changed."""
    book = catalog.get_book(db, book_id, include_hidden=True)
    if book is None:
        return False
    wanted = {k: v for k, v in _publisher_metadata(meta).items() if k in (*catalog.EDITABLE, "authors", "subjects")}
    now = {**book, "authors": tuple(book["authors"]), "subjects": tuple(sorted(book["subjects"]))}
    changed = {k: v for k, v in wanted.items() if now.get(k) != (tuple(sorted(v)) if k == "subjects" else v)}
    if not changed:
        return False
    catalog.update_book(db, book_id, authors=changed.pop("authors", None), subjects=changed.pop("subjects", None),
                        **changed)
    return True


def _keep_hub_key(settings: Settings, release: bundles.Release) -> None:
    """The hub's key a release names (signed by the publisher, whom this box trusts): a box set up
    without it gets it this way, and takes the hub's signed time and acknowledgements from then on."""
    if not release.hub_key:
        return
    path = settings.keys_dir / HUB_PUBLIC_KEY
    try:
        if path.read_text().strip() == release.hub_key:
            return
    except FileNotFoundError:
        pass
    settings.keys_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, release.hub_key + "\n")
    logger.info("the hub's key, named by %s version %d, is now %s", release.channel, release.version, path)


def _drop_if_orphan(db, book_id: int) -> None:
    still = db.execute("SELECT 1 FROM channel_items WHERE book_id = ? LIMIT 1", [book_id]).fetchone()
    row = db.execute("SELECT source FROM books WHERE id = ?", [book_id]).fetchone()
    if still is None and row is not None and row[0] != "import":
        catalog.remove_book(db, book_id)


def collect_garbage(db: sqlite_utils.Database, blobs: BlobStore, *, grace_seconds: float = GC_GRACE_SECONDS) -> int:
    """Delete blobs no book refers to (older than ``grace_seconds``). Returns how many."""
    referenced = catalog.referenced_blobs(db)
    now = time.time()
    removed = 0
    for sha in list(blobs.all()):
        if sha in referenced:
            continue
        try:
            age = now - os.stat(blobs.path(sha)).st_mtime
        except FileNotFoundError:
            continue
        if age >= grace_seconds:
            blobs.delete(sha)
            removed += 1
    if removed:
        logger.info("collected %d unreferenced blobs", removed)
    return removed


def sync_once(settings: Settings, db: sqlite_utils.Database, source: ReleaseSource, *,
              channels: list[str] | None = None) -> list[tuple[str, ApplyResult | Exception]]:
    """Install the newest release of every subscribed channel that ``source`` offers."""
    outcomes: list[tuple[str, ApplyResult | Exception]] = []
    for channel in channels or subscribed_channels(db):
        try:
            outcomes.append((channel, apply_release(settings, db, source, channel)))
        except (bundles.BundleError, NotEnoughDisk, minisign.SignatureError, SourceError, OSError) as e:
            logger.warning("channel %s not updated: %s", channel, e)
            outcomes.append((channel, e))
    return outcomes


def describe(result: ApplyResult) -> str:
    if result.status == "current":
        return f"{result.channel}: version {result.new_version} is already installed"
    return (f"{result.channel}: installed version {result.new_version} (was {result.old_version or 'none'}): "
            f"{result.added} added, {result.updated} updated, {result.removed} removed, "
            f"{result.fetched_blobs} files fetched ({result.fetched_bytes / 1e6:.1f} MB)")


def to_json(result: ApplyResult) -> str:
    return json.dumps(result.__dict__, ensure_ascii=False)

"""Files that could not be read: a copy in ``quarantine/`` and a catalog row saying why.

A librarian sees them on the system and upload pages, can have one read again (a newer version
of the box may read what an older one could not) or remove it; a file imported after all leaves
quarantine by itself.
"""
from __future__ import annotations

import logging
from pathlib import Path

import sqlite_utils

from appliance.messages import Message
from appliance.settings import Settings
from appliance.storage import catalog
from appliance.storage.atomic import atomic_write_chunks, fsync_dir

logger = logging.getLogger(__name__)


def copy_path(settings: Settings, sha256: str, file_name: str) -> Path:
    """Where the copy of a quarantined file is kept: its hash's first characters, then its name."""
    return settings.quarantine_dir / f"{sha256[:12]}-{_safe_name(file_name)}"


def keep(settings: Settings, db: sqlite_utils.Database, path: Path, sha256: str, reason: Message) -> None:
    """Copy ``path`` into quarantine (once) and record why it could not be read."""
    target = copy_path(settings, sha256, path.name)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as source:
            # Owner-only: whatever it is, only the librarian's pages hand it out.
            atomic_write_chunks(target, iter(lambda: source.read(1024 * 1024), b""), mode=0o600)
    catalog.add_quarantine(db, sha256, path.name, reason)
    logger.warning("quarantined %s: %s", path, reason)


def forget(settings: Settings, db: sqlite_utils.Database, sha256: str) -> str | None:
    """Take a file out of quarantine (its row, then its copy); the file's name, or None when it
    was not there."""
    file_name = catalog.remove_quarantine(db, sha256)
    if file_name is not None:
        copy = copy_path(settings, sha256, file_name)
        if copy.exists():
            copy.unlink()
            fsync_dir(copy.parent)
    return file_name


def _safe_name(name: str) -> str:
    keep_chars = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return keep_chars[-100:] or "file"

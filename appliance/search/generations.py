"""The index folder's generations: which one is current, the others, the switch to another, and
flushing a generation's files to disk.

``CURRENT`` names the live generation (a folder ``gen-000007``, say) and is replaced
atomically; see ``appliance.search.rebuilds`` for how a rebuild makes a new generation and
switches to it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from appliance.storage.atomic import atomic_write_text, fsync_dir

__all__ = ["IndexFolder", "fsync_file", "fsync_tree"]

POINTER = "CURRENT"


class IndexFolder:
    """A search index's folder (``LIBRARY_HOME/index``) and its generations."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _current_gen(self) -> str | None:
        try:
            name = (self.folder / POINTER).read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        if not re.fullmatch(r"gen-\d{6}", name):
            return None
        return name

    def has_generation(self) -> bool:
        """Whether an index was ever made here (a new data folder has none)."""
        return self._current_gen() is not None

    def _pointer_key(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.folder / POINTER)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def stamp(self) -> tuple:
        """Changes whenever what searches answer may change: a new generation, or a commit in the
        current one (it writes new files in the generation's folder). Two stats and a small read,
        for keeping whole answers (appliance.web.pagecache)."""
        gen = self._current_gen()
        try:
            changed = os.stat(self.folder / gen).st_mtime_ns if gen is not None else None
        except OSError:
            changed = None
        return self._pointer_key(), gen, changed

    def _generation_dirs(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.is_dir() and re.fullmatch(r"gen-\d{6}", p.name)]

    def _switch_to(self, gen: str) -> None:
        atomic_write_text(self.folder / POINTER, gen + "\n")


def fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for name in os.listdir(path):
        fsync_file(path / name)
    fsync_dir(path)

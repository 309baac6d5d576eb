"""Content-addressed file storage: ``blobs/ab/cdef...`` named by SHA-256.

A blob is written to a temporary name, fsynced, then renamed, so a power cut
leaves either no blob or the whole one. A book in two channels is stored once.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from appliance.storage.atomic import fsync_dir

CHUNK = 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BlobMissing(LookupError):
    """No blob with that hash is stored."""


class BlobCorrupt(ValueError):
    """The bytes on disk do not match the hash they are stored under."""


def is_sha256(value: str) -> bool:
    return bool(_HEX64.match(value or ""))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return is_sha256(sha256) and self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            self._install(sha, lambda out: out.write(data))
        return sha

    def put_file(self, source: Path, expected_sha256: str | None = None) -> str:
        """Copy ``source`` into the store (hashing as it copies) and return its hash.

        With ``expected_sha256`` the copy is refused (BlobCorrupt) unless it matches.
        """
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".incoming.{os.getpid()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            if expected_sha256 is not None and sha != expected_sha256:
                raise BlobCorrupt(f"{source} has SHA-256 {sha}, expected {expected_sha256}")
            if self.exists(sha):
                os.unlink(tmp)
            else:
                self._rename_into_place(tmp, sha)
            return sha
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def adopt(self, tmp_path: Path, sha256: str) -> None:
        """Move an already verified, fsynced file (on the same file system) into the store."""
        if self.exists(sha256):
            os.unlink(tmp_path)
        else:
            self._rename_into_place(str(tmp_path), sha256)

    def open(self, sha256: str):
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    def verify(self, sha256: str) -> bool:
        return self.exists(sha256) and sha256_file(self.path(sha256)) == sha256

    def delete(self, sha256: str) -> None:
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            pass

    def all(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir() and len(sub.name) == 2:
                for f in sorted(sub.iterdir()):
                    name = sub.name + f.name
                    if is_sha256(name):
                        yield name

    def clean_temporaries(self) -> int:
        """Remove the temporary files of writes whose process ended mid-way (a power cut, a kill):
        each is named after its writer's process, and one still running keeps its own."""
        removed = 0
        if self.root.is_dir():
            for tmp in self.root.glob(".incoming.*.tmp"):
                writer = _writer_pid(tmp.name)
                if writer is not None and _running(writer):
                    continue
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def _install(self, sha: str, write) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".incoming.{os.getpid()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            self._rename_into_place(tmp, sha)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _rename_into_place(self, tmp: str, sha: str) -> None:
        final = self.path(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        fsync_dir(final.parent)


def _writer_pid(name: str) -> int | None:
    """The process a temporary file ``.incoming.<pid>.<random>.tmp`` was written by (None for
    files older versions named without it)."""
    part = name.split(".")[2] if name.count(".") >= 4 else ""
    return int(part) if part.isdigit() else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


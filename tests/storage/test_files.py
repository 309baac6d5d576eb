"""Paths that come in from outside (a USB stick, a folder to import) are read only as regular files."""
from __future__ import annotations

import os
import threading

import pytest

from appliance.storage.atomic import NotARegularFile, open_regular
from content_sync.sync.sources import FolderSource, SourceError


def test_a_regular_file_opens(tmp_path):
    path = tmp_path / "book.epub"
    path.write_bytes(b"PK\x03\x04")
    with open_regular(path) as f:
        assert f.read() == b"PK\x03\x04"


def test_a_fifo_or_a_device_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = []
    worker = threading.Thread(target=lambda: done.append(pytest.raises(NotARegularFile, open_regular, fifo)))
    worker.start()
    worker.join(5)
    assert done, "opening a FIFO hung"
    with pytest.raises(NotARegularFile):
        open_regular("/dev/zero")
    with pytest.raises(NotARegularFile):
        open_regular(tmp_path)


def test_a_link_is_refused_when_links_are_not_followed(tmp_path):
    secret = tmp_path / "secret.key"
    secret.write_text("do not read")
    link = tmp_path / "book.epub"
    link.symlink_to(secret)
    with pytest.raises(NotARegularFile):
        open_regular(link, follow_links=False)


def test_a_release_tree_with_a_fifo_for_a_file_is_refused_not_waited_on(tmp_path):
    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    os.mkfifo(blobs / ("ab" * 32))
    os.mkfifo(tmp_path / "manifest.json")
    source = FolderSource(tmp_path)
    with pytest.raises(SourceError, match="not a regular file"):
        source.open_blob("ab" * 32, 10)
    with pytest.raises(SourceError, match="not a regular file"):
        source.read("manifest.json")

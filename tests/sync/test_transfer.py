"""Downloads over a link that is cut again and again: kept going while data moves."""
from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from content_sync.sync.transfer import Downloader, LinkPolicy

BLOB = bytes(range(256)) * 400  # 100 KB
CUT_EVERY = 7_000  # bytes each connection carries before it is cut


class CuttingHandler(BaseHTTPRequestHandler):
    """Serves BLOB with Range, and cuts every answer after CUT_EVERY bytes."""

    cut_every = CUT_EVERY

    def do_GET(self):
        offset = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
        self.send_response(206 if offset else 200)
        self.send_header("Content-Length", str(len(BLOB) - offset))
        self.end_headers()
        self.wfile.write(BLOB[offset:offset + self.cut_every])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def cutting_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CuttingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_a_download_goes_on_while_every_connection_moves_data(cutting_server, tmp_path):
    """15 connections for one file, with at most 3 attempts allowed: none is given up, since each
    moved data; the file arrives whole."""
    sleeps: list[float] = []
    downloader = Downloader(cutting_server, LinkPolicy(sleep=sleeps.append), max_attempts=3, chunk=4096)
    digest = downloader.fetch("blob", len(BLOB), tmp_path / "blob")
    assert digest == hashlib.sha256(BLOB).hexdigest()
    assert (tmp_path / "blob").read_bytes() == BLOB
    assert downloader.requests == -(-len(BLOB) // CUT_EVERY)
    assert sum(sleeps) == 0  # data moved each time: no waiting


def test_a_link_that_moves_nothing_is_given_up(tmp_path, monkeypatch):
    monkeypatch.setattr(CuttingHandler, "cut_every", 0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), CuttingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sleeps: list[float] = []
        downloader = Downloader(f"http://127.0.0.1:{server.server_port}/", LinkPolicy(sleep=sleeps.append),
                                max_attempts=4)
        with pytest.raises(Exception):  # noqa: B017 - whichever error the last cut gave
            downloader.fetch("blob", len(BLOB), tmp_path / "blob")
        assert downloader.requests == 4 and len(sleeps) == 3
    finally:
        server.shutdown()

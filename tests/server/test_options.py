"""The box's server options: a big body is taken only on the upload pages, and only from a librarian."""
from __future__ import annotations

import socket
import tempfile
import threading

from appliance.server.http import create_server, serve_until
from appliance.server.options import server_options
from appliance.storage import accounts as auth
from appliance.storage.db import catalog_session
from tests.support.admin import make_admin


def first_answer(port: int, path: str, length: int, cookie: str = "") -> bytes:
    """What the server says once the headers of a post declaring ``length`` bytes are in ("" while
    it waits for the body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        headers = f"POST {path} HTTP/1.1\r\nHost: box\r\nContent-Length: {length}\r\n"
        if cookie:
            headers += f"Cookie: library_admin={cookie}\r\n"
        sock.sendall((headers + "\r\n").encode() + b"x" * 1000)
        sock.settimeout(1.0)
        try:
            return sock.recv(100)
        except TimeoutError:
            return b""


def chunked_answer(port: int, path: str, cookie: str = "", megabytes: int = 10) -> bytes:
    """What the server says after ``megabytes`` of a chunked body ("" while it waits for more)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        headers = f"POST {path} HTTP/1.1\r\nHost: box\r\nTransfer-Encoding: chunked\r\n"
        if cookie:
            headers += f"Cookie: library_admin={cookie}\r\n"
        sock.sendall((headers + "\r\n").encode())
        chunk = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"
        try:
            for _ in range(megabytes):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(1.0)
        try:
            return sock.recv(100)
        except TimeoutError:
            return b""


def test_only_a_librarian_may_send_a_large_upload(app, settings, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # server_options points it into the data folder
    admin = make_admin(settings)
    with catalog_session(settings.db_path) as db:
        token = auth.start_session(db, admin.id)
    server = create_server(app, host="127.0.0.1", port=0, threads=4, **server_options(settings))
    stopping = threading.Event()
    loop = threading.Thread(target=serve_until, args=(server, stopping, 0.05), daemon=True)
    loop.start()
    try:
        port, big = server.effective_port, 150 * 1024 * 1024
        assert first_answer(port, "/admin/upload", big).startswith(b"HTTP/1.1 413")
        assert first_answer(port, "/admin/upload", big, cookie="made-up").startswith(b"HTTP/1.1 413")
        assert first_answer(port, "/admin/upload", big, cookie=token) == b""  # the body is awaited
        assert first_answer(port, "/search", big, cookie=token).startswith(b"HTTP/1.1 413")
        too_big = (settings.upload_max_mb + 17) * 1024 * 1024
        assert first_answer(port, "/admin/upload", too_big, cookie=token).startswith(b"HTTP/1.1 413")
        # A chunked body declares no length: it meets the same rule once what arrived passes 9 MB.
        assert chunked_answer(port, "/admin/upload").startswith(b"HTTP/1.1 413")
        assert chunked_answer(port, "/admin/upload", cookie=token) == b""
    finally:
        stopping.set()
        loop.join(10)

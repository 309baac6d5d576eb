"""The box's HTTP server (appliance/server/http.py): waitress whose connections do not ask for write
events while a request runs. Answers must still arrive whole: small and large, all at once and
streamed, to many clients at once and to a phone that reads slowly."""
from __future__ import annotations

import hashlib
import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.server.http import GuardedChannel, create_server, serve_until

BIG = bytes(range(256)) * 12_000  # 3 MB: more than the socket buffers hold


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/small":
        body = b"small answer " + environ["QUERY_STRING"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/stream":  # chunks with pauses, as a page rendered piece by piece
        def chunks():
            for i in range(0, len(BIG), 256 * 1024):
                time.sleep(0.01)
                yield BIG[i:i + 256 * 1024]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return chunks()
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


@pytest.fixture()
def server():
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    stopping = threading.Event()
    thread = threading.Thread(target=serve_until, args=(srv, stopping, 0.05), daemon=True)
    thread.start()
    yield srv
    stopping.set()
    thread.join(timeout=10)


def test_connections_wait_quietly_while_a_worker_sends(server):
    """While a worker holds a connection's output buffer (it is sending it), the connection does
    not ask the loop for write events: the loop could not send, and would only select again at
    once. With the buffer free, or the request over, it asks as waitress does."""
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    conn.request("GET", "/small?x")
    assert conn.getresponse().read() == b"small answer x"
    channels = [c for c in server._map.values() if isinstance(c, GuardedChannel)]
    assert len(channels) == 1
    channel = channels[0]
    deadline = time.monotonic() + 5
    while channel.requests and time.monotonic() < deadline:  # the worker ends the request after sending
        time.sleep(0.01)
    with channel.requests_lock:
        channel.requests.append(object())  # as while a worker runs one
        try:
            with channel.outbuf_lock:  # as a worker appending and sending
                channel.outbufs[-1].append(b"x" * 100)
                channel.total_outbufs_len += 100
                assert not _writable_from_other_thread(channel)
                channel.will_close = True  # closing: always
                assert _writable_from_other_thread(channel)
                channel.will_close = False
            # Free again: writable, or already sent by the loop (which may be holding the buffer
            # for that very send when asked: it saw the closing connection writable a moment ago).
            deadline = time.monotonic() + 2
            while not (_writable_from_other_thread(channel) or channel.total_outbufs_len == 0):
                assert time.monotonic() < deadline
                time.sleep(0.005)
        finally:
            channel.requests.pop()
    conn.close()


def _writable_from_other_thread(channel) -> bool:
    result = []
    thread = threading.Thread(target=lambda: result.append(bool(channel.writable())))
    thread.start()
    thread.join(5)
    return result[0]


def test_many_clients_keeping_their_connections_get_whole_answers(server):
    def client(n: int) -> list[bytes]:  # each phone from an address of its own, as on the Wi-Fi
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=30,
                                          source_address=(f"127.0.1.{n + 1}", 0))
        out = []
        for i in range(15):
            path = "/big" if i % 5 == 4 else f"/small?{n}-{i}"
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            out.append(response.read())
        conn.close()
        return out

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(client, range(20)))
    for n, answers in enumerate(results):
        for i, body in enumerate(answers):
            assert body == (BIG if i % 5 == 4 else f"small answer {n}-{i}".encode())


@pytest.mark.parametrize("path", ["/big", "/stream"])
def test_a_slow_reader_gets_every_byte(server, path):
    sock = socket.create_connection(("127.0.0.1", server.effective_port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n".encode())
    received = bytearray()
    while True:
        data = sock.recv(32 * 1024)
        if not data:
            break
        received += data
        if len(received) < 512 * 1024:
            time.sleep(0.002)  # a phone on weak Wi-Fi, at first
    sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    if b"chunked" in head.lower():
        body = _dechunk(body)
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(BIG).hexdigest()


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2:]


def serve(**options):
    srv = create_server(app, host="127.0.0.1", port=0, threads=4, **options)
    stopping = threading.Event()
    thread = threading.Thread(target=serve_until, args=(srv, stopping, 0.05), daemon=True)
    thread.start()
    return srv, lambda: (stopping.set(), thread.join(timeout=10))


def slow_client(port: int, source: str) -> socket.socket:
    """A connection from ``source`` (another loopback address) that starts a request and stalls."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n")
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def honest_request_seconds(port: int) -> float:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/small?honest")
    assert conn.getresponse().read() == b"small answer honest"
    conn.close()
    return time.monotonic() - started


def test_one_address_cannot_take_every_connection():
    """100 stalled connections from one address (a slow-headers attack) get 16 places; the rest are
    closed at once, and a phone at another address is answered straight away."""
    srv, stop = serve(per_client=16, header_seconds=30, connection_limit=100)
    try:
        port = srv.effective_port
        attack = [slow_client(port, "127.0.0.2") for _ in range(100)]
        refused = sum(closed_by_server(s, 0.5) for s in attack[16:])
        assert refused == 84
        assert not any(closed_by_server(s, 0.05) for s in attack[:16])
        assert honest_request_seconds(port) < 1.0
        assert srv.client_guard.open["127.0.0.2"] == 16
        for s in attack:
            s.close()
    finally:
        stop()


def test_headers_that_trickle_in_are_cut_off():
    """A request whose headers come a line at a time is closed once its header time is over, even
    though it keeps sending; a request sent whole on the same server is answered."""
    srv, stop = serve(per_client=16, header_seconds=1.0)
    try:
        port = srv.effective_port
        sock = slow_client(port, "127.0.0.3")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_server(sock, 0.2):
                closed = True
                break
        assert closed and 0.9 < time.monotonic() - started < 3
        assert srv.client_guard.timed_out >= 1
        assert honest_request_seconds(port) < 1.0
        # Keep-alive between requests is not a slow request.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/small?a")
        assert conn.getresponse().read() == b"small answer a"
        time.sleep(1.5)
        conn.request("GET", "/small?b")
        assert conn.getresponse().read() == b"small answer b"
    finally:
        stop()


def test_a_connection_that_never_speaks_is_closed():
    srv, stop = serve(header_seconds=0.5)
    try:
        sock = socket.create_connection(("127.0.0.1", srv.effective_port), timeout=5)
        assert closed_by_server(sock, 3)
    finally:
        stop()


def test_a_body_too_large_for_its_path_is_refused_before_it_is_read():
    """The declared length is checked against the path's limit as soon as the headers are in: no
    byte of the body is waited for (waitress would spool it to disk first)."""
    from appliance.server.http import BodyLimits

    srv, stop = serve(body_limits=BodyLimits(1000, {"/upload": 10_000_000}))
    try:
        for path, length, refused in (("/small", 5000, True), ("/upload", 5000, False), ("/upload", 20_000_000, True)):
            with socket.create_connection(("127.0.0.1", srv.effective_port), timeout=5) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
                sock.settimeout(1.0)
                try:
                    answer = sock.recv(100)
                except TimeoutError:
                    answer = b""  # waiting for the body, as it should
            assert answer.startswith(b"HTTP/1.1 413") == refused, (path, length, answer)
        # A chunked body is cut off once it passes the limit.
        with socket.create_connection(("127.0.0.1", srv.effective_port), timeout=5) as sock:
            sock.sendall(b"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(3):
                sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 413")
    finally:
        stop()

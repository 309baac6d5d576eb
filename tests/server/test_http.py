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

from appliance.server.http import QuietChannel, create_server, serve_until

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
    channels = [c for c in server._map.values() if isinstance(c, QuietChannel)]
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
    def client(n: int) -> list[bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=30)
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

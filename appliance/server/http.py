"""The HTTP server the box and the hub run: waitress, with one change to how its loop waits, and
the loop that runs it until SIGTERM.

waitress runs one loop thread that selects on the sockets and worker threads that run requests.
A worker appends its answer to the connection's output buffer and sends it itself, holding the
buffer's lock; it wakes the loop when it stops with something left to send and when the request
ends. Meanwhile waitress's loop asks to hear when the connection is writable whenever the buffer is
not empty. A socket almost always is writable, so select returns at once, the loop finds the buffer
locked by the worker (or, with ``send_bytes`` above 1, too short to send before the request ends)
and selects again: it spins holding the interpreter lock, and the worker, back from each send,
waits for the lock to be handed over (up to Python's 5 ms switch interval). With a handful of
phones at once a 3 KB stylesheet took 30 ms, and the server answered a tenth of what it answered
one client.

``QuietChannel`` asks for write events only when the loop could send something: no request runs,
or the connection is closing, or the buffer is long enough and no worker holds it.
"""
from __future__ import annotations

import socket
import threading

import waitress
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer


class QuietChannel(HTTPChannel):
    def writable(self):
        if self.requests and not self.will_close and not self.close_when_flushed:
            if self.total_outbufs_len < self.adj.send_bytes:
                return False  # handle_write keeps this until the request ends
            if not self.outbuf_lock.acquire(blocking=False):
                return False  # a worker is sending it and wakes the loop when it stops
            self.outbuf_lock.release()
        return super().writable()


def create_server(app, **options):
    """``waitress.create_server`` (same options) with connections that do not spin while a
    request runs."""
    server = waitress.create_server(app, **options)
    for listener in list(_socket_map(server).values()):
        if isinstance(listener, BaseWSGIServer):  # one per address listened on
            listener.channel_class = QuietChannel
    return server


def shared_port_sockets(host: str, port: int, count: int, backlog: int = 1024) -> list[list[socket.socket]]:
    """``count`` listening sockets on one port for each address ``host`` names (as waitress reads
    it), for ``count`` processes to accept on one each. With SO_REUSEPORT the kernel hands each new
    connection to one of the sockets by a hash of its addresses. (Processes accepting on one shared
    socket split the connections badly: the one awake first took all twenty of a burst.)"""
    groups = []
    for family, socktype, proto, sockaddr in Adjustments(host=host, port=port).listen:
        group: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(family, socktype, proto)
                group.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # The first takes the port (a free one for port 0); the others join it.
                sock.bind(sockaddr if len(group) == 1 else (sockaddr[0], group[0].getsockname()[1], *sockaddr[2:]))
                sock.listen(backlog)
        except OSError:
            for sock in (s for g in [*groups, group] for s in g):
                sock.close()
            raise
        groups.append(group)
    return groups


def _socket_map(server) -> dict:
    return getattr(server, "map", None) or server._map


class StopFlag:
    """What a signal handler sets to stop ``serve_until``. Not a threading.Event: its ``set()``
    takes a lock, and a second signal arriving inside the first handler's ``set()`` waited for
    that lock forever (a worker was sent several when its first process was killed)."""

    def __init__(self) -> None:
        self._set = False

    def set(self, *_signal_args) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def serve_until(server, stopping: threading.Event | StopFlag, tick: float = 0.5, idle=None) -> None:
    """Run waitress's loop until ``stopping`` is set (by SIGTERM), then let running requests finish.

    waitress itself stops only on KeyboardInterrupt; raising from a signal handler can land inside a
    channel's handler, and closing the sockets from it breaks the running select. So the loop runs one
    short round at a time and checks the event between rounds (and calls ``idle()`` there, if given).
    """
    socket_map = _socket_map(server)
    while not stopping.is_set():
        wasyncore.loop(timeout=tick, map=socket_map, count=1)
        if idle is not None:
            idle()
    server.task_dispatcher.shutdown()
    server.close()

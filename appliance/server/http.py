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

``GuardedChannel`` asks for write events only when the loop could send something: no request runs,
or the connection is closing, or the buffer is long enough and no worker holds it.

It also keeps slow or greedy clients from starving the rest. waitress serves at most
``connection_limit`` connections (100 by default) and closes one only after ``channel_timeout``
(120 s) without a byte: 100 connections sending their headers a line every two seconds held every
place, and other phones waited 20 s and more. So each client address may hold at most
``PER_CLIENT_CONNECTIONS`` connections at once (a phone's browser opens up to 6 to one host), and a
request's headers must all arrive within ``HEADER_SECONDS`` of its first byte (of the connection's
opening, for the first request), else the connection is closed.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import waitress
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from waitress.utilities import RequestEntityTooLarge

logger = logging.getLogger(__name__)

PER_CLIENT_CONNECTIONS = 16  # two tabs of a phone's browser; an attacker's 100 from one address are 16
HEADER_SECONDS = 10.0  # a phone's headers fit in one packet: 10 s is generous on a bad Wi-Fi
CONNECTION_LIMIT = 400  # all clients together (waitress's default 100 is four greedy phones' worth)
# A request body larger than its path allows is refused on its declared length, before waitress
# spools a byte of it to disk (three anonymous 210 MB posts put 660 MB in the data folder).
DEFAULT_BODY_BYTES = 9 * 1024 * 1024  # a statistics batch (8 MB at most) and its headers


class BodyLimits:
    """The largest request body for each path: the longest matching prefix's, else ``default``.

    ``may_send_more(headers)``, if given, is asked before a body over ``default`` is read (waitress's
    parsed headers: ``{"COOKIE": ...}``): the box lets only a logged-in librarian's upload through,
    so that anonymous 210 MB posts to the upload page are refused before they reach the disk."""

    def __init__(self, default: int = DEFAULT_BODY_BYTES, prefixes: dict[str, int] | None = None,
                 may_send_more: Callable[[dict], bool] | None = None):
        self.default = default
        self.prefixes = sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))
        self.may_send_more = may_send_more

    def __call__(self, path: str) -> int:
        for prefix, limit in self.prefixes:
            if path.startswith(prefix):
                return limit
        return self.default

    @property
    def largest(self) -> int:
        return max([self.default, *(limit for _p, limit in self.prefixes)])


class LimitedParser(HTTPRequestParser):
    """waitress's request parser, with the body limit of the request's path: checked on the declared
    length once the headers are in, and on what has arrived of a chunked body."""

    limits: BodyLimits  # set on the class made for each server (create_server)
    _may_send_more: bool | None = None  # asked once a request, when its body passes the default

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        self._refuse_beyond(self.content_length)

    def received(self, data):
        consumed = super().received(data)
        if not self.completed and self.body_rcv is not None:  # a chunked body: its length comes as it comes
            self._refuse_beyond(self.body_bytes_received)
        return consumed

    def _refuse_beyond(self, length: int) -> None:
        if length <= self.limits.default:
            return
        if length <= self.limits(self.path or "/"):
            if self._may_send_more is None:
                may = self.limits.may_send_more
                self._may_send_more = may is None or may(self.headers)
            if self._may_send_more:
                return
        self.error = RequestEntityTooLarge(f"exceeds the body size {self.path} takes here")
        self.completed = True


class ClientGuard:
    """Connections per client address, shared by the listeners of one server (run in its loop thread)."""

    def __init__(self, per_client: int = PER_CLIENT_CONNECTIONS, header_seconds: float = HEADER_SECONDS,
                 exempt: frozenset[str] = frozenset()):
        self.per_client = per_client
        self.header_seconds = header_seconds
        self.exempt = exempt  # a trusted proxy's address: every client comes through it
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def admit(self, address: str) -> bool:
        self.open[address] += 1
        if address in self.exempt or self.open[address] <= self.per_client:
            return True
        self.refused += 1
        return False

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class GuardedChannel(HTTPChannel):
    guard: ClientGuard  # set on the class made for each server (create_server)

    def __init__(self, server, sock, addr, adj, map=None):
        self._client = addr[0] if isinstance(addr, tuple) and addr else str(addr)
        self._counted = False
        self._header_deadline: float | None = time.monotonic() + self.guard.header_seconds
        super().__init__(server, sock, addr, adj, map)
        self._counted = True
        if not self.guard.admit(self._client):
            if self.guard.refused % 100 == 1:
                logger.warning("refusing connections from %s: it holds %d already (%d refused so far)",
                               self._client, self.guard.per_client, self.guard.refused)
            self.will_close = True  # closed at the loop's next turn, nothing read

    def received(self, data):
        started = self.request is not None
        done = super().received(data)
        if self.request is None or self.request.headers_finished:
            self._header_deadline = None  # idle between requests: waitress's channel_timeout
        elif not started or self._header_deadline is None:
            self._header_deadline = time.monotonic() + self.guard.header_seconds
        return done

    def readable(self):
        if self._header_deadline is not None and not self.will_close and time.monotonic() > self._header_deadline:
            self.guard.timed_out += 1
            if self.guard.timed_out % 100 == 1:
                logger.warning("closing a connection from %s: its request's headers took over %g s (%d so far)",
                               self._client, self.guard.header_seconds, self.guard.timed_out)
            self.will_close = True
            return False
        return super().readable()

    def del_channel(self, map=None):
        if self._counted:
            self._counted = False
            self.guard.release(self._client)
        super().del_channel(map)

    def writable(self):
        if self.requests and not self.will_close and not self.close_when_flushed:
            if self.total_outbufs_len < self.adj.send_bytes:
                return False  # handle_write keeps this until the request ends
            if not self.outbuf_lock.acquire(blocking=False):
                return False  # a worker is sending it and wakes the loop when it stops
            self.outbuf_lock.release()
        return super().writable()


def create_server(app, *, per_client: int = PER_CLIENT_CONNECTIONS, header_seconds: float = HEADER_SECONDS,
                  trusted_proxy: str = "", body_limits: BodyLimits | None = None, **options):
    """``waitress.create_server`` (same options) with connections that do not spin while a request
    runs, at most ``per_client`` connections per client address, and ``header_seconds`` for a
    request's headers. ``trusted_proxy``: the address of a load balancer in front (the hub's): its
    ``X-Forwarded-For`` names the client, and its connections are not counted as one client's.
    ``body_limits``: the largest body each path takes (``DEFAULT_BODY_BYTES`` everywhere if not given)."""
    options.setdefault("connection_limit", CONNECTION_LIMIT)
    body_limits = body_limits or BodyLimits()
    options["max_request_body_size"] = body_limits.largest + 1
    if trusted_proxy:
        options.update(trusted_proxy=trusted_proxy, trusted_proxy_count=1,
                       trusted_proxy_headers={"x-forwarded-for"}, clear_untrusted_proxy_headers=True)
    guard = ClientGuard(per_client, header_seconds, frozenset({trusted_proxy}) if trusted_proxy else frozenset())
    parser = type("LimitedParser", (LimitedParser,), {"limits": body_limits})
    channel = type("GuardedChannel", (GuardedChannel,), {"guard": guard, "parser_class": parser})
    server = waitress.create_server(app, **options)
    for listener in list(_socket_map(server).values()):
        if isinstance(listener, BaseWSGIServer):  # one per address listened on
            listener.channel_class = channel
    server.client_guard = guard
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

"""Answering requests in more than one process.

waitress runs requests in threads of one interpreter, and one interpreter runs Python on one core
at a time: a search page costs a few milliseconds of it, and fifty phones take turns at it however
many cores the box has. So ``library serve`` starts ``workers - 1`` more processes (``python -m
appliance.server.processes``) that answer on the same port, each on a listening socket of its own
(``appliance.server.http.shared_port_sockets``): the kernel spreads new connections over them.

The first process (the one ``library serve`` runs) is the only one that does anything besides
answering pages: it keeps the search index current and compacts it, announces the box on the
network, and holds what the box must have once, not once per process: which phones saw the captive
portal's welcome page, the wrong passwords counted per address (both in memory only), the index
rebuild and the sync a librarian starts from the system page, the vans heard nearby. The other
processes ask it for those over a socket pair each (``Remote``): the portal's probes, the login
pages, the system page, and every page at most every few seconds for the vans.
When each process last received a request is written in a page of shared memory (``Board``), so the
first process compacts the index only when nobody has asked any of them anything for a while.

A worker that dies is started again (after 1 s, doubling up to a minute while they keep dying);
a worker whose first process is gone stops. Everything here is for Linux (memfd, SO_REUSEPORT,
PR_SET_PDEATHSIG); the server runs in one process elsewhere.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from appliance.settings import Settings
from appliance.web.board import Board
from appliance.web.context import services
from appliance.web.services import BoxServices
from appliance.workerpool import die_with_parent

logger = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 4  # each process keeps its own caches: 70-115 MB more memory each (PSS)
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
STOP_SECONDS = 10.0
VANS_SECONDS = 5.0  # a worker asks for the vans nearby at most this often (every page shows them)


def worker_count(settings: Settings) -> int:
    """How many processes answer requests: the setting, or one per core (at most 4) when it is 0;
    always 1 where this module cannot work (without memfd or SO_REUSEPORT)."""
    if not (hasattr(os, "memfd_create") and hasattr(socket, "SO_REUSEPORT")):
        return 1
    if settings.workers:
        return settings.workers
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


class Link:
    """A worker's end of its socket pair to the first process: one call at a time."""

    def __init__(self, sock: socket.socket):
        self._conn = Connection(sock.detach(), readable=True, writable=True)
        self._lock = threading.Lock()

    def call(self, target: str, method: str, *args):
        with self._lock:
            self._conn.send((target, method, args))
            ok, value = self._conn.recv()
        if not ok:
            raise value
        return value


class Remote:
    """Stands in a worker for an object of the first process: ``remote.method(*args)`` runs there."""

    def __init__(self, link: Link, target: str):
        self._link = link
        self._target = target

    def __getattr__(self, method: str) -> Callable:
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self._link.call(self._target, method, *args)


class RemoteVans:
    """The vans nearby as the first process hears them, asked at most every ``VANS_SECONDS``."""

    def __init__(self, link: Link, seconds: float = VANS_SECONDS):
        self._remote = Remote(link, "vans")
        self._seconds = seconds
        self._kept: tuple[float, list] | None = None

    def vans(self) -> list:
        kept = self._kept
        now = time.monotonic()
        if kept is None or now - kept[0] >= self._seconds:
            kept = self._kept = (now, self._remote.vans())
        return kept[1]


def shared_objects(app) -> dict[str, object]:
    """What workers ask the first process for, by the names ``Remote`` uses."""
    return {name: getattr(services(app), name) for name in BoxServices.SHARED}


def use_first_process(app, link: Link) -> None:
    """Make a worker's app ask the first process for what there is only one of."""
    for name in BoxServices.SHARED:
        if name != "vans":
            setattr(services(app), name, Remote(link, name))
    services(app).vans = RemoteVans(link)


def _answer_calls(conn: Connection, objects: Callable[[], dict[str, object]], slot: int) -> None:
    """The first process's side of one worker's socket pair, until the worker goes."""
    with conn:
        _answer(conn, objects, slot)


def _answer(conn: Connection, objects: Callable[[], dict[str, object]], slot: int) -> None:
    while True:
        try:
            target, method, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if method.startswith("_"):
                raise AttributeError(method)
            value = (True, getattr(objects()[target], method)(*args))
        except Exception as e:  # the worker raises it in the request that asked
            logger.exception("worker %d's call %s.%s failed", slot, target, method)
            value = (False, e)
        try:
            conn.send(value)
        except (OSError, ValueError):  # the worker went
            return
        except Exception as e:  # an answer that cannot be pickled: the worker must not wait forever
            logger.exception("worker %d's call %s.%s: the answer cannot be sent", slot, target, method)
            conn.send((False, RuntimeError(f"{target}.{method}: {e}")))


class WorkerProcesses:
    """The processes that answer besides the first one: started, watched, started again, stopped."""

    def __init__(self, app, settings: Settings, sockets: list[list[socket.socket]]):
        """``sockets``: for each address listened on, a socket for each process (the first
        process's first; ``appliance.server.http.shared_port_sockets``). This process keeps them all
        open, so the connections the kernel gives a worker that died wait for the one started again."""
        self.app = app
        self.settings = settings
        self.sockets = sockets
        self.count = len(sockets[0])
        self.board = Board.shared(self.count)
        state = services(app).library
        state.board, state.slot = self.board, 0
        self._processes: dict[int, subprocess.Popen] = {}
        self._started_at: dict[int, float] = {}
        self._restart_at: dict[int, float] = {}  # of the dead ones
        self._delay: dict[int, float] = {}
        self._stopping = False

    def start(self) -> None:
        for slot in range(1, self.count):
            self._start(slot)

    def _start(self, slot: int) -> None:
        ours, theirs = socket.socketpair()
        listen = [group[slot].fileno() for group in self.sockets]
        command = [sys.executable, "-m", "appliance.server.processes", "--first", str(os.getpid()),
                   "--slot", str(slot), "--slots", str(self.count),
                   "--board", str(self.board.fd), "--link", str(theirs.fileno()),
                   "--listen", ",".join(map(str, listen))]
        env = self.settings.child_env()
        try:
            process = subprocess.Popen(command, pass_fds=[*listen, self.board.fd, theirs.fileno()], env=env)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        conn = Connection(ours.detach(), readable=True, writable=True)
        threading.Thread(target=_answer_calls, args=(conn, lambda: shared_objects(self.app), slot),
                         name=f"worker-{slot}-calls", daemon=True).start()
        self._processes[slot] = process
        self._started_at[slot] = time.monotonic()
        logger.info("worker %d started (pid %d)", slot, process.pid)

    def check(self) -> None:
        """Start again the workers that died (call often, from the server's loop)."""
        if self._stopping:
            return
        now = time.monotonic()
        for slot, process in list(self._processes.items()):
            if process.poll() is None:
                if now - self._started_at[slot] >= RESTART_MAX_SECONDS:
                    self._delay.pop(slot, None)  # it stayed up: the next death restarts it soon again
                continue
            if slot not in self._restart_at:
                self._delay[slot] = min(self._delay.get(slot, RESTART_FIRST_SECONDS / 2) * 2, RESTART_MAX_SECONDS)
                self._restart_at[slot] = now + self._delay[slot]
                logger.warning("worker %d (pid %d) ended with %s; starting it again in %.0f s",
                               slot, process.pid, process.returncode, self._delay[slot])
            if now >= self._restart_at[slot]:
                del self._restart_at[slot]
                self._start(slot)

    def stop(self) -> None:
        """Ask every worker to finish its requests and end; kill the ones that do not in time."""
        self._stopping = True
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self._processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> None:
    """A worker: serve the inherited sockets until SIGTERM, SIGINT or the first process's end."""
    parser = argparse.ArgumentParser(prog="python -m appliance.server.processes", description=main.__doc__)
    parser.add_argument("--first", type=int, required=True, help="the first process's pid")
    parser.add_argument("--slot", type=int, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--board", type=int, required=True)
    parser.add_argument("--link", type=int, required=True)
    parser.add_argument("--listen", required=True)
    args = parser.parse_args(argv)
    from appliance.memory import MemoryTrimmer, limit_arenas
    from appliance.server.http import StopFlag, create_server, serve_until
    from appliance.server.options import server_options
    from appliance.web.factory import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    first = args.first  # not os.getppid(): the first process may have died already
    die_with_parent(first, signal.SIGTERM)
    stopping = StopFlag()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping.set)

    limit_arenas()
    settings = Settings.passed_on()
    app = create_app(settings)
    state = services(app).library
    state.board, state.slot = Board.attach(args.board, args.slots), args.slot
    use_first_process(app, Link(socket.socket(fileno=args.link)))
    sockets = [socket.socket(fileno=int(fd)) for fd in args.listen.split(",")]
    server = create_server(app, sockets=sockets, threads=settings.threads, ident="library",
                           **server_options(settings, processes=args.slots))
    trimmer = MemoryTrimmer()

    def tick() -> None:
        trimmer.tick()
        if os.getppid() != first:
            logger.warning("worker %d: the server's first process is gone; stopping", args.slot)
            stopping.set()

    logger.info("worker %d answering (pid %d)", args.slot, os.getpid())
    try:
        serve_until(server, stopping, idle=tick)
    finally:
        state.close()


if __name__ == "__main__":
    main()

"""``library serve`` in several processes: both answer, what the box has once stays once (captive
portal, wrong passwords, the index's state), dead workers come back, and nothing outlives the server."""
from __future__ import annotations

import http.client
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from appliance.discovery import wait_for
from appliance.server.processes import Board
from appliance.storage import db as dbmod
from tests.support.admin import PASSWORD, TOKEN, make_admin
from tests.support.processes import alive, child_running, children, cpu_seconds

PHONES = itertools.count()
OPEN = re.compile(r"Library open at http://localhost:(\d+)/(?: \((\d+) processes\))?")


class Server:
    """``library serve`` with ``LIBRARY_WORKERS=2`` on a free port of 127.0.0.1."""

    def __init__(self, settings, workers: int = 2):
        env = {**os.environ, **settings.to_env(), "LIBRARY_PORT": "0", "LIBRARY_HOST": "127.0.0.1",
               "LIBRARY_WORKERS": str(workers)}
        self.log = settings.home / "server.log"
        self.process = subprocess.Popen([sys.executable, "-m", "appliance.cli.main", "serve"], env=env,
                                        stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True)
        line = self.process.stdout.readline()
        while line and not OPEN.search(line):
            line = self.process.stdout.readline()
        found = OPEN.search(line)
        assert found, f"the server did not start: {self.log.read_text()}"
        self.port, self.count = int(found.group(1)), int(found.group(2) or 1)
        self.pid = self.process.pid

    def workers(self) -> list[int]:
        return children(self.pid)

    def ready(self) -> list[int]:
        """The workers, once every one of them answers (the first process answers from the start)."""
        assert wait_for(lambda: self.log.read_text().count(" answering (pid ") >= self.count - 1, 15), \
            self.log.read_text()
        return self.workers()

    def get(self, path: str, headers: dict | None = None, method: str = "GET", body=None, source: str = "127.0.0.1"):
        """One request on a connection of its own (the kernel hands it to either process), from
        ``source`` (one phone's address)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, answer.msg, answer.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(30)
        finally:
            self.process.stdout.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        workers = self.workers() if self.process.poll() is None else []
        self.stop()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def books(settings, make_epub, tmp_path):
    from tests.conftest import import_files

    paths = [make_epub(title=f"Truyện số {i}",
                       chapters=(("Chương một", (f"Một câu chuyện về con trâu số {i} trên núi.",)),))
             for i in range(12)]
    import_files(settings, paths)
    return settings


def many(server: Server, paths: list[str], threads: int = 16, headers: dict | None = None,
         source: str | None = None) -> list:
    """``paths`` asked ``threads`` at a time by many phones, each from an address of its own as on the
    Wi-Fi (the server limits how many connections one address holds), or all by one phone at ``source``."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda p: server.get(p, headers=headers,
                                                  source=source or f"127.0.1.{next(PHONES) % 250 + 1}"), paths))


def test_both_processes_answer_and_count_what_readers_do(books):
    with Server(books) as server:
        assert server.count == 2
        (worker,) = server.ready()
        before = {pid: cpu_seconds(pid) for pid in (server.pid, worker)}
        answers = many(server, [f"/search?q=con+trau+{i % 12}&n={i}" for i in range(240)]
                       + [f"/books/{1 + i % 12}" for i in range(120)])
        assert all(status == 200 for status, _, _ in answers)
        assert all("Truyện số" in body for _, _, body in answers)
        used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
        # Each process did a fair part of the work (with one process, the worker would use nothing).
        assert min(used.values()) > 0.15 * sum(used.values()), used

        def views() -> int:
            db = dbmod.connect(books.db_path, migrate=False)
            try:
                return db.execute("SELECT coalesce(sum(count), 0) FROM stats_counts WHERE kind = 'view'").fetchone()[0]
            finally:
                db.close()

        # Each process writes its own counts into the catalog every second; none is lost.
        assert wait_for(lambda: views() == 120, 10), views()
    log = server.log.read_text()
    assert "database is locked" not in log and "Traceback" not in log, log


def test_phones_keeping_their_connections_open_are_spread_over_both_processes(books):
    """Twenty phones connecting at once, each keeping its connection for all its pages: with one
    socket shared by the processes, the one awake first often took all twenty."""
    with Server(books) as server:
        (worker,) = server.ready()
        before = {pid: cpu_seconds(pid) for pid in (server.pid, worker)}
        start = threading.Barrier(20)

        def phone(n: int) -> list[int]:
            start.wait()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                              source_address=(f"127.0.2.{n + 1}", 0))
            try:
                statuses = []
                for i in range(20):
                    conn.request("GET", f"/search?q=trau+{(n + i) % 12}&phone={n}-{i}")
                    answer = conn.getresponse()
                    answer.read()
                    statuses.append(answer.status)
                return statuses
            finally:
                conn.close()

        with ThreadPoolExecutor(20) as pool:
            statuses = [s for answers in pool.map(phone, range(20)) for s in answers]
        assert statuses == [200] * 400
        used = {pid: cpu_seconds(pid) - before[pid] for pid in before}
        assert min(used.values()) > 0.15 * sum(used.values()), used


def test_a_phone_released_by_the_portal_stays_released_whichever_process_answers(books):
    probe = {"Host": "connectivitycheck.gstatic.com"}
    with Server(books) as server:
        server.ready()
        # One phone, asking as often as its system does, 6 at a time at most (as a browser does).
        phone = "127.0.3.1"
        assert all(status == 302 for status, _, _ in many(server, ["/generate_204"] * 20, 6, probe, phone))
        status, _, _ = server.get("/portal/continue", headers={"Host": "library.lan"}, source=phone)
        assert status == 303
        answers = many(server, ["/generate_204"] * 60, 6, probe, phone)
        assert [status for status, _, _ in answers] == [204] * 60


def _cookies(headers) -> str:
    """The cookies an answer sets, as the next request's Cookie header."""
    pairs = (value.split(";")[0] for value in headers.get_all("Set-Cookie") or [])
    return "; ".join(pair for pair in pairs if not pair.endswith("="))


def _login(server: Server, password: str) -> tuple[int, str]:
    """Log in as a browser would (form, then POST): the status and the session's Cookie header."""
    status, headers, page = server.get("/admin/login")
    token = TOKEN.search(page).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "username": "mai", "password": password})
    status, headers, page = server.get("/admin/login", method="POST", body=body,
                                       headers={"Content-Type": "application/x-www-form-urlencoded",
                                                "Cookie": _cookies(headers)})
    return status, _cookies(headers)


def test_wrong_passwords_are_counted_once_for_the_whole_server(books):
    make_admin(books)
    with Server(books) as server:
        server.ready()
        answers = [_login(server, "wrong password")[0] for _ in range(10)]
        assert answers == [403] * 5 + [429] * 5


def test_the_librarian_sees_the_index_state_of_the_process_that_keeps_it(books):
    make_admin(books)
    with Server(books) as server:
        server.ready()
        status, session = _login(server, PASSWORD)
        assert status == 303, status

        def system_pages() -> list[str]:
            return [body for _, _, body in many(server, ["/admin/system"] * 20, headers={"Cookie": session})]

        # Only the first process keeps the index; a worker asks it (without asking: "unknown").
        assert wait_for(lambda: all("<strong>current</strong>" in page for page in system_pages()), 10)


def test_the_librarians_rebuild_runs_in_a_process_that_ends_with_the_server(books):
    """Pressed on whichever process answers, the rebuild runs in a process of its own, started by
    the first; when the server is killed mid-rebuild that process ends too (held here, stopped), and
    the server started again finds its index usable and current."""
    make_admin(books)
    with Server(books) as server:
        server.ready()
        status, session = _login(server, PASSWORD)
        _, headers, page = server.get("/admin/system", headers={"Cookie": session})
        body = urllib.parse.urlencode({"csrf_token": TOKEN.search(page).group(1)})
        status, _, _ = server.get("/admin/system/reindex", method="POST", body=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": session})
        assert status == 303

        rebuilding = wait_for(lambda: child_running(server.pid, b"appliance.jobs.child"), 10, step=0.005)
        assert rebuilding
        os.kill(rebuilding, signal.SIGSTOP)
        pages = [body for _, _, body in many(server, ["/admin/system"] * 10, headers={"Cookie": session})]
        assert all("<strong>rebuilding</strong>" in page for page in pages)
        current = (books.index_dir / "CURRENT").read_text()
        os.kill(server.pid, signal.SIGKILL)
        os.kill(rebuilding, signal.SIGCONT)  # the signal the server's death sent it is pending meanwhile
        assert wait_for(lambda: not alive(rebuilding), 10)
        assert (books.index_dir / "CURRENT").read_text() == current  # it ended there, not done
    with Server(books) as server:
        server.ready()
        assert wait_for(lambda: "Truyện số 3" in server.get("/search?q=con+trau+3")[2], 15)
        status, session = _login(server, PASSWORD)
        assert wait_for(lambda: "<strong>current</strong>" in server.get("/admin/system", headers={"Cookie": session})[2], 15)
        # The half-made index the rebuild left is gone (at 10,000 books it would be hundreds of MB).
        assert sorted(p.name for p in books.index_dir.glob("gen-*")) == [current.strip()]


def test_a_dead_worker_is_started_again_and_the_server_stops_whole(books):
    with Server(books) as server:
        (worker,) = server.ready()
        os.kill(worker, signal.SIGKILL)
        assert all(server.get("/")[0] == 200 for _ in range(20))  # the first process answers meanwhile
        (again,) = wait_for(lambda: [pid for pid in server.workers() if pid != worker and alive(pid)], 15)
        assert all(status == 200 for status, _, _ in many(server, ["/search?q=trau"] * 40))
        assert server.stop() == 0
        assert wait_for(lambda: not alive(again), 5)
    assert f"worker 1 (pid {worker}) ended with -9" in server.log.read_text()


def test_a_worker_stops_when_the_first_process_is_killed(books):
    with Server(books) as server:
        (worker,) = server.ready()
        os.kill(server.pid, signal.SIGKILL)
        assert wait_for(lambda: not alive(worker), 10)
        with pytest.raises(ConnectionRefusedError):
            server.get("/")


def test_the_board_shows_requests_noted_by_another_process(tmp_path):
    board = Board.shared(3)
    start = board.latest()
    code = ("import sys, time; from appliance.server.processes import Board; "
            "b = Board.attach(int(sys.argv[1]), 3); b.note(2); print(repr(time.monotonic()))")
    time.sleep(0.05)
    out = subprocess.run([sys.executable, "-c", code, str(board.fd)], pass_fds=[board.fd], check=True,
                         capture_output=True, text=True).stdout
    noted = board.latest()
    assert start < noted <= float(out)


def test_one_process_when_asked(books):
    with Server(books, workers=1) as server:
        assert server.count == 1 and server.get("/")[0] == 200
        assert server.workers() == []


def test_how_many_processes(settings, monkeypatch):
    from appliance.server.processes import MAX_AUTO_WORKERS, worker_count

    assert worker_count(settings) == 1  # the default
    assert worker_count(settings.replace(workers=3)) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert worker_count(settings.replace(workers=0)) == MAX_AUTO_WORKERS == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert worker_count(settings.replace(workers=0)) == 2

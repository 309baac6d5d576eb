"""The box under attack while honest phones read, held to a Pi's memory and CPU.

    .venv/bin/python bench/bench_attack_soak.py --minutes 3      # as root: in a control group

Makes a data folder (``library demo --no-serve`` and --books EPUBs of catalog_gen.py) unless --home
names one, leaves three signed batches of a neighbour box in its outbox, and starts ``library serve``
on 127.0.0.1 in two processes (as the image does), in a control group of 640 MB and one CPU when run
as root (cgroup_limits.py; else unlimited, and said so). For --minutes, 20 phones (threads, each from
its own address 127.0.1.N) walk the soak's mix with pauses of 0.2-1 s; after --quiet seconds,
attackers from 127.0.2-5.x (a process of their own, off the phones' interpreter) run the loops below,
each bounded in count and time. Every 3 s the group's memory, the server's PSS and the request
bodies it spooled to disk are sampled. Then the server is stopped, the data folder checked (PRAGMA
integrity_check, books, each blob file's hash, the neighbour's batches) and the junk batches removed.
Prints a JSON report; exits 1 if the phones' p95 under attack is 500 ms or more, a server process
ended or was started again, the processes' own memory (the group's without page cache, else PSS)
reached 400 MB, or anything was lost. Only 127.0.0.0/8 is reached. Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_core import free_port  # noqa: E402
from bench_peers import proc_stats, proc_tree, wait_answer  # noqa: E402
from bench_soak import mixed_paths  # noqa: E402
from boxenv import DEFAULT, box_python  # noqa: E402
from catalog_gen import generate  # noqa: E402
from cgroup_limits import CgroupLimits  # noqa: E402

from content_sync.protocol import batches as statsbatch  # noqa: E402

MB = 1024 * 1024
PHONES = 20
TARGET_P95_MS, TARGET_MEMORY_MB = 500, 400


def dial(port: int, source: str, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def answer(sock: socket.socket, wait: float = 10) -> str:
    """The status the server answered, or how the connection ended without one."""
    sock.settimeout(wait)
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return "no answer"
    except OSError as e:
        return type(e).__name__
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed" if not data else "junk"


def big_post(port: int, source: str, head: str, send: int, wait: float) -> str:
    """Send ``head`` and up to ``send`` bytes of body, stopping at the server's answer; what it answered."""
    try:
        with dial(port, source) as sock:
            sock.sendall(head.encode())
            chunk, sent = b"x" * 65536, 0
            while sent < send:
                if select.select([sock], [], [], 0)[0]:
                    return answer(sock)
                sent += sock.send(chunk)
            return answer(sock, wait)
    except OSError as e:
        return type(e).__name__


def paced(count: int, end: float, pause: float):
    """0, 1, ... up to ``count``, ``pause`` apart, while before ``end`` (monotonic)."""
    for i in range(count):
        if time.monotonic() >= end:
            return
        yield i
        time.sleep(pause)


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> int | str:
    try:
        conn.request(method, path, body)
        response = conn.getresponse()
        response.read()
        if response.will_close:
            conn.close()
        return response.status
    except (OSError, http.client.HTTPException) as e:
        conn.close()  # connects again at the next request
        return type(e).__name__


def connection(port: int, source: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))


# -- the attacks: each returns what became of it; together they run in ``attack`` ---------------


def slow_headers(port: int, end: float, connections: int = 100, addresses: int = 2, hold: float = 60) -> dict:
    """Connections sending a request's headers a line every 2 s, dialled again once closed."""

    def one(i: int) -> list[tuple[str, float]]:
        time.sleep(i * 0.02)
        ends = []
        for _ in paced(int((end - time.monotonic()) / 2) + 1, end, 2.0):
            started, outcome = time.monotonic(), "held 60 s"
            try:
                with dial(port, f"127.0.2.{1 + i % addresses}") as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: box\r\n")
                    while time.monotonic() - started < hold:
                        if time.monotonic() >= end:
                            outcome = "open when the attack ended"
                            break
                        if select.select([sock], [], [], 2.0)[0]:
                            status = answer(sock)
                            outcome = (f"answered {status}" if status.isdigit() else "refused at once"
                                       if time.monotonic() - started < 1 else "cut while sending headers")
                            break
                        sock.sendall(b"X-Slow-%d: %d\r\n" % (i, time.monotonic()))
            except OSError as e:
                outcome = f"error {type(e).__name__}"
            ends.append((outcome, time.monotonic() - started))
        return ends

    with ThreadPoolExecutor(connections) as pool:
        ends = [e for one_ends in pool.map(one, range(connections)) for e in one_ends]
    cut = sorted(took for outcome, took in ends if outcome == "cut while sending headers")
    return {"connections": connections, "addresses": addresses, "ends": dict(Counter(o for o, _t in ends)),
            "cut_after_s [min, median, max]": [round(cut[0], 1), round(cut[len(cut) // 2], 1),
                                               round(cut[-1], 1)] if cut else None}


def big_peer_posts(port: int, end: float, count: int = 60) -> dict:
    """Declaring 190 MB to the peer endpoints, 4 MB sent."""
    ends: Counter[str] = Counter()
    for i in paced(count, end, 2.0):
        path = ("/api/v1/batches", "/api/v1/boxes")[i % 2]
        head = f"POST {path} HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\nContent-Length: {190 * MB}\r\n\r\n"
        ends[f"{path}: {big_post(port, '127.0.3.1', head, 4 * MB, 10)}"] += 1
    return dict(ends)


def big_uploads(port: int, end: float, rounds: int = 15, at_once: int = 3) -> dict:
    """Anonymous uploads declaring 210 MB, 16 MB sent, three at a time, each given up 5 s later."""
    head = (f"POST /admin/upload HTTP/1.1\r\nHost: box\r\nContent-Length: {210 * MB}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n\r\n")
    ends: Counter[str] = Counter()
    with ThreadPoolExecutor(at_once) as pool:
        for _ in paced(rounds, end, 5.0):
            ends.update(pool.map(lambda _i: big_post(port, "127.0.3.2", head, 16 * MB, 5), range(at_once)))
    return dict(ends)


def junk_batches(port: int, end: float, keys_root: Path, max_keys: int = 20, per_key: int = 12) -> dict:
    """1 MB signed batches from made-up box keys, each key's until refused, until a new key's first is."""
    rng, statuses, accepted_mb, conn = random.Random(5), Counter(), 0.0, connection(port, "127.0.4.1")
    k = n = -1
    status: int | str = 0
    for k in paced(max_keys, end, 0):
        key = statsbatch.load_box_key(keys_root / f"junk-{k}")
        for n in paced(per_key, end, 0.3):
            searches = [{"day": "2026-12-01", "term": rng.randbytes(500).hex(), "found": False, "count": 1}
                        for _ in range(1000)]
            body = statsbatch.sign_payload({"format": 1, "box": key.public_b64, "batch": n + 1, "box_name": "junk",
                                            "clock_trusted": False, "days": ["2026-12-01"], "books": [],
                                            "searches": searches, "hours": []}, key)
            status = request(conn, "POST", "/api/v1/batches", body)
            statuses[str(status)] += 1
            if status != 200:
                break
            accepted_mb += len(body) / MB
        if n == 0 and status != 200:
            break  # the box takes nothing more from anyone new
    return {"keys": k + 1, "answers": dict(statuses), "accepted_mb": round(accepted_mb, 1)}


def repeated(port: int, end: float, source: str, make, count: int, pause: float) -> dict:
    """``count`` requests ``make()`` gives (method, path, body), on a kept-alive connection: the answers."""
    statuses, conn = Counter(), connection(port, source)
    for _ in paced(count, end, pause):
        statuses[str(request(conn, *make()))] += 1
    return dict(statuses)


def split_header(port: int, end: float, count: int = 60) -> dict:
    """/reader/settings?back=/%0d%0aX: the answer, and whether a header line "X" came back."""
    ends: Counter[str] = Counter()
    for _ in paced(count, end, 2.0):
        try:
            with dial(port, "127.0.5.2") as sock:
                sock.sendall(b"GET /reader/settings?back=/%0d%0aX HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
                head = sock.recv(65536).split(b"\r\n\r\n")[0].split(b"\r\n")
            split = any(line.strip() == b"X" for line in head[1:])
            ends[head[0].split(b" ")[1].decode() + (", header split!" if split else "")] += 1
        except (OSError, IndexError) as e:
            ends[f"error {type(e).__name__}"] += 1
    return dict(ends)


def attack(port: int, start: float, end: float, keys_root: Path, results) -> None:
    """Every attack at once from ``start`` to ``end`` (monotonic); what became of them to ``results``."""
    time.sleep(max(0.0, start - time.monotonic()))
    # Besides the functions above: JSON nested 32,000 and 10,000 deep (under the 64 KB taken), blobs nobody has.
    nests = [b"[" * 32000 + b"]" * 32000, b'{"a":' * 10000 + b"1" + b"}" * 10000]
    runs = {"slow_headers": lambda: slow_headers(port, end),
            "big_peer_posts": lambda: big_peer_posts(port, end),
            "big_uploads": lambda: big_uploads(port, end),
            "junk_batches": lambda: junk_batches(port, end, keys_root),
            "nested_json": lambda: repeated(port, end, "127.0.5.1",
                                            lambda: ("POST", "/api/v1/boxes", random.choice(nests)), 60, 2.0),
            "split_header": lambda: split_header(port, end),
            "random_blobs": lambda: repeated(port, end, "127.0.5.3",
                                             lambda: ("GET", "/releases/blobs/sha256/" + os.urandom(32).hex()), 600, 0.25)}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(run) for name, run in runs.items()}
    out = {name: f.result() if f.exception() is None else {"bench_error": repr(f.exception())}
           for name, f in futures.items()}
    results.put(out)


# -- the phones, the server's state, the data folder ---------------------------------------------


def phone(n: int, port: int, paths: list[str], end: float, out: list) -> None:
    """Walk ``paths`` from 127.0.1.n on a kept-alive connection: (start, ms, status) to ``out``."""
    rng, conn = random.Random(n), connection(port, f"127.0.1.{n}")
    for path in paths:
        if time.monotonic() >= end:
            return
        started = time.monotonic()
        status = request(conn, "GET", path)
        out.append((started, (time.monotonic() - started) * 1000, status))
        time.sleep(rng.uniform(0.2, 1.0))


def latency(times: list[float]) -> dict:
    ordered = sorted(times) or [0.0]
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # noqa: E731
    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1)}


def server_state(pid: int, spool: Path) -> tuple[set[int], int]:
    """The server's worker processes (besides the first), and the bytes of request bodies its
    processes hold spooled to (deleted) files in ``spool``."""
    workers, spooled = set(), 0
    for member in proc_tree(pid):
        try:
            if b"appliance.server.processes" in Path(f"/proc/{member}/cmdline").read_bytes():
                workers.add(member)
            fds = list(Path(f"/proc/{member}/fd").iterdir())
        except OSError:  # it ended meanwhile
            continue
        for fd in fds:
            try:
                spooled += fd.stat().st_size if os.readlink(fd).startswith(str(spool)) else 0
            except OSError:  # closed meanwhile
                pass
    return workers, spooled


def sample(pid: int, group: CgroupLimits | None, spool: Path, stop: threading.Event, rows: list, seen: set) -> None:
    """Every 3 s: [s, the group's MB (with page cache), its processes' own MB, PSS MB, spooled MB]."""
    t0 = time.monotonic()
    while not stop.wait(3):
        workers, spooled = server_state(pid, spool)
        seen.update(workers)
        cg = group.report() if group else {}
        rows.append([round(time.monotonic() - t0), cg.get("now_mb"), cg.get("processes_now_mb"),
                     round(proc_stats(pid)["Pss"], 1), round(spooled / MB, 1)])


def file_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot(home: Path, neighbour: Path) -> dict:
    conn = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        books = conn.execute("SELECT count(*) FROM books").fetchone()[0]
    finally:
        conn.close()
    return {"integrity": integrity, "books": books, "blobs": file_hashes(home / "blobs"),
            "neighbour": file_hashes(neighbour)}


def make_home(work: Path, books: int, library: list[str], env: dict) -> Path:
    home = work / "home"
    if not (home / "catalog.db").exists():
        quiet = {"env": dict(env, LIBRARY_DISK_RESERVE_MB="0"), "check": True, "stdout": subprocess.DEVNULL}
        subprocess.run(library + ["demo", "--no-serve"], **quiet)
        generate(work / "books", books, seed=17, include_real=False)
        subprocess.run(library + ["import", str(work / "books")], **quiet)
    return home


def carry_neighbour_batches(outbox: Path, keys: Path) -> Path:
    """Three small signed batches of a neighbour box, as a van leaves them: they must survive."""
    key = statsbatch.load_box_key(keys)
    for n in (1, 2, 3):
        statsbatch.carry(outbox, statsbatch.sign_payload(
            {"format": 1, "box": key.public_b64, "batch": n, "box_name": "neighbour", "clock_trusted": True,
             "days": ["2026-12-01"], "books": [], "searches": [], "hours": [{"day": "2026-12-01", "hour": 9, "count": n}]},
            key))
    return statsbatch.outbox_folder(outbox, key.public_b64)


def soak(args, home: Path, server: subprocess.Popen, port: int, group: CgroupLimits | None, keys_root: Path) -> dict:
    """The phones and the attackers; the report's figures and the targets missed (``failed``)."""
    spool = home / "staging" / "tmp"
    for _ in range(100):  # the worker answers a moment after the first process
        if server_state(server.pid, spool)[0]:
            break
        time.sleep(0.1)
    first_workers = server_state(server.pid, spool)[0]
    paths = mixed_paths(home / "catalog.db", PHONES * int(args.minutes * 300 + 1), seed=9)
    warm = connection(port, "127.0.1.250")
    for path in paths[:40]:  # every kind of page once, as after the first readers
        request(warm, "GET", path)
    t0 = time.monotonic()
    end, attack_start = t0 + args.minutes * 60, t0 + min(args.quiet, args.minutes * 30)
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    attacker = fork.Process(target=attack, args=(port, attack_start, end - 5, keys_root, results))
    attacker.start()  # before this process starts any thread
    stop, samples, seen, requests = threading.Event(), [], set(first_workers), []
    watchers = [threading.Thread(target=sample, args=(server.pid, group, spool, stop, samples, seen))]
    watchers += [threading.Thread(target=group.watch, args=(stop,))] if group else []
    share = len(paths) // PHONES  # a stretch of the walk each: the whole mix
    phones = [threading.Thread(target=phone, args=(n, port, paths[(n - 1) * share:n * share], end, requests))
              for n in range(1, PHONES + 1)]
    for t in watchers + phones:
        t.start()
    for t in phones:
        t.join()
    attacks = results.get(timeout=120)
    attacker.join(timeout=30)
    stop.set()
    for t in watchers:
        t.join()

    errors = Counter(str(st) for _s, _ms, st in requests if not (isinstance(st, int) and st < 400))
    honest = {"phones": PHONES, "requests": len(requests), "errors": sum(errors.values()), "error_kinds": dict(errors),
              "latency_ms": latency([ms for _s, ms, _st in requests]),
              "before_the_attacks_ms": latency([ms for s, ms, _st in requests if s < attack_start]),
              "under_attack_ms": latency([ms for s, ms, _st in requests if s >= attack_start])}
    highest = lambda column: max((row[column] for row in samples if row[column] is not None), default=None)  # noqa: E731
    memory = {"group": group.report() if group else None, "pss_highest": highest(3), "spooled_highest": highest(4),
              "samples [s, group, its processes, PSS, spooled]": samples}
    alive = server.poll() is None
    workers_now = server_state(server.pid, spool)[0] if alive else set()
    state = {"first_process_alive": alive, "processes_at_start": 1 + len(first_workers),
             "processes_at_end": alive + len(workers_now), "workers_started_again": len(seen - first_workers),
             "oom_kills": memory["group"]["oom_kills"] if group else None}
    failed = []
    if honest["under_attack_ms"]["p95"] >= TARGET_P95_MS:
        failed.append(f"the phones' p95 under attack is {honest['under_attack_ms']['p95']} ms")
    if not alive or workers_now != first_workers or seen != first_workers or state["oom_kills"]:
        failed.append("a server process ended or was started again")
    own_mb = (memory["group"]["processes_highest_mb"] if group else None) or highest(3) or 0
    if own_mb >= TARGET_MEMORY_MB:
        failed.append(f"the server's processes took {own_mb} MB")
    return {"honest": honest, "memory_mb": memory, "server": state, "attacks": attacks, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="a data folder with a catalog (else one is made in --work)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-attack"))
    parser.add_argument("--books", type=int, default=300, help="generated books besides the demo's")
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--quiet", type=float, default=20, help="seconds of phones alone before the attacks")
    parser.add_argument("--box-venv", type=Path, default=DEFAULT, help="made with the box's own dependencies only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    library = [box_python(args.box_venv), "-m", "appliance.cli.main"]
    env = dict(os.environ, LIBRARY_HOME=str(args.home or args.work / "home"), LIBRARY_HOST="127.0.0.1",
               LIBRARY_WORKERS="2")
    home = args.home or make_home(args.work, args.books, library, env)
    neighbour = carry_neighbour_batches(home / "outbox", args.work / "neighbour-keys")
    before = snapshot(home, neighbour)
    try:
        group, limits = CgroupLimits("attack-soak", memory_mb=640, cpus=1.0), {"memory_mb": 640, "cpus": 1.0}
    except OSError as e:  # not root, or no control groups here
        group, limits = None, f"none ({e})"
        print(f"running without limits: {e}", file=sys.stderr)
    port, keys_root = free_port(), Path(tempfile.mkdtemp(prefix="junk-keys-", dir=args.work))
    report: dict = {"home": str(home), "books": before["books"], "minutes": args.minutes, "limits": limits}
    with open(args.work / "server.log", "wb") as log:
        server = subprocess.Popen(library + ["serve", "--port", str(port)], env=env, stdout=log, stderr=log,
                                  preexec_fn=group.join if group else None)
        try:
            report["cold_start_s"] = round(wait_answer(f"http://127.0.0.1:{port}/", server), 1)
            report.update(soak(args, home, server, port, group, keys_root))
        finally:
            server.terminate()
            server.wait(timeout=30)
            if group:
                group.remove()
    after = snapshot(home, neighbour)
    changed = [k for k, v in before["blobs"].items() if after["blobs"].get(k) != v]
    kept = sum(after["neighbour"].get(k) == v for k, v in before["neighbour"].items())
    report["kept"] = {"integrity_check": after["integrity"], "books_before_after": [before["books"], after["books"]],
                      "blob_files": len(before["blobs"]), "blob_files_changed_or_gone": len(changed),
                      "neighbour_batches_kept": f"{kept}/{len(before['neighbour'])}"}
    if after["integrity"] != "ok" or after["books"] != before["books"] or changed or kept != len(before["neighbour"]):
        report["failed"].append("something in the data folder was lost or changed")
    for keys in keys_root.glob("junk-*"):  # leave the outbox as it was
        shutil.rmtree(statsbatch.outbox_folder(home / "outbox", statsbatch.load_box_key(keys).public_b64),
                      ignore_errors=True)
    shutil.rmtree(keys_root, ignore_errors=True)
    print(json.dumps(report, indent=1, ensure_ascii=False))
    sys.exit(1 if report["failed"] else 0)


if __name__ == "__main__":
    main()

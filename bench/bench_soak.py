"""The box under a long mixed load: memory over time, throughput, latency and errors.

    python bench/bench_soak.py --home /tmp/bench-core/home-10000 --minutes 10 --clients 20

Starts ``library serve`` on the given data folder (on 127.0.0.1), then runs ``wrk`` for
``--minutes`` with a script that walks through what phones ask for, in a fixed mix: the home
page, searches (titles, authors and words from the catalog, each different), book pages,
chapters, covers, downloads and OPDS feeds. The server's RSS is read from /proc every 15 s.
Prints a JSON report (RSS at start / after the first minute / at the end / highest, requests/s,
latency p50/p95/p99, errors). Nothing here runs in CI.

With ``--memory-mb`` (and ``--cpus``) the server runs in a control group of that much memory (and
CPU time), as the box's systemd unit holds it (run as root; see cgroup_limits.py); with
``--rebuild-after`` the librarian's "Rebuild index" starts that many seconds into the load, as the
server starts it (a process of its own, in the same group), the heaviest job the server does:

    python bench/bench_soak.py --home /tmp/bc10k/home --minutes 5 --workers 2 \
        --memory-mb 640 --cpus 1 --rebuild-after 60
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_core import free_port  # noqa: E402
from bench_peers import WRK_SCRIPT, proc_stats, wait_answer  # noqa: E402
from boxenv import DEFAULT, box_python  # noqa: E402
from cgroup_limits import CgroupLimits  # noqa: E402

from appliance.settings import Settings
from appliance.textfold import fold

REQUESTS = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""


def mixed_paths(db_path: Path, count: int, seed: int) -> list[str]:
    """``count`` paths in the mix a room of phones makes (per 20: 3 home, 5 search, 4 book,
    4 chapter, 2 cover, 1 download, 1 OPDS)."""
    rng = random.Random(seed)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    books = [r[:2] for r in conn.execute("SELECT id, title, thumb_sha256 FROM books WHERE hidden = 0")]
    with_covers = [r[0] for r in conn.execute("SELECT id FROM books WHERE hidden = 0 AND thumb_sha256 IS NOT NULL")]
    authors = [r[0] for r in conn.execute("SELECT name FROM authors")]
    chapters: dict[int, list[int]] = {}
    for book_id, position in conn.execute("SELECT book_id, position FROM chapters"):
        chapters.setdefault(book_id, []).append(position)
    conn.close()
    mix = ["home"] * 3 + ["search"] * 5 + ["book"] * 4 + ["chapter"] * 4 + ["cover"] * 2 + ["download", "opds"]
    out = []
    for n in range(count):
        kind = mix[n % len(mix)]
        book_id, title = rng.choice(books)
        if kind == "home":
            out.append("/")
        elif kind == "search":
            words = fold(rng.choice([title, rng.choice(authors) if authors else title])).split()
            start = rng.randrange(max(1, len(words) - 1))
            out.append("/search?q=" + urllib.parse.quote(" ".join(words[start:start + 2]) or "sach"))
        elif kind == "book":
            out.append(f"/books/{book_id}")
        elif kind == "chapter":
            with_text = book_id if book_id in chapters else rng.choice(list(chapters))
            out.append(f"/books/{with_text}/read/{rng.choice(chapters[with_text])}")
        elif kind == "cover":
            out.append(f"/books/{rng.choice(with_covers)}/thumbnail")
        elif kind == "download":
            out.append(f"/books/{book_id}/download")
        else:
            out.append(rng.choice(["/opds", "/opds/new", "/opds/v2", "/opds/languages"]))
    return out


def run_soak(pid: int, base: str, paths: list[str], minutes: float, clients: int, script: Path) -> dict:
    """Run wrk for ``minutes`` with ``clients`` walking ``paths`` on the server at ``base`` (process
    ``pid``), reading its RSS every 15 s: requests/s, latency, errors, RSS (MB) and CPU seconds."""
    script.write_text(REQUESTS % ", ".join(json.dumps(p) for p in paths) + WRK_SCRIPT)
    samples: list[tuple[int, float, float]] = []  # seconds, RSS and PSS (MB) of the server's processes
    stop = threading.Event()
    start = proc_stats(pid)

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.wait(15):
            now = proc_stats(pid)
            samples.append((round(time.perf_counter() - t0), round(now["VmRSS"], 1), round(now["Pss"], 1)))

    threading.Thread(target=sample, daemon=True).start()
    try:
        out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{int(minutes * 60)}s", "--timeout", "10s", "-s",
                              str(script), base], capture_output=True, text=True, check=True).stdout
    finally:
        stop.set()
    result = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    end = proc_stats(pid)
    return {"requests_per_s": round(result["requests"] / (result["duration_us"] / 1e6), 1),
            "latency_ms": {k: result[k] for k in ("p50", "p95", "p99")},
            "errors": {"socket": result["socket_errors"], "status": result["status_errors"]},
            "rss_mb": {"start": round(start["VmRSS"], 1),
                       "after_1_min": next((m for t, m, _ in samples if t >= 60), None),
                       "end": round(end["VmRSS"], 1), "highest": round(end["VmHWM"], 1)},
            "pss_mb": {"start": round(start["Pss"], 1),
                       "after_1_min": next((p for t, _, p in samples if t >= 60), None),
                       "end": round(end["Pss"], 1)},
            "processes": end["processes"], "cpu_s": round(end["cpu_s"], 1), "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="the box's data folder (already imported)")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--paths", type=int, default=20_000, help="distinct requests in the walk")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--box-venv", type=Path, default=DEFAULT, help="made with the box's own dependencies only")
    parser.add_argument("--workers", type=int, default=1, help="LIBRARY_WORKERS: processes answering")
    parser.add_argument("--memory-mb", type=int, help="run the server in a control group of this much memory")
    parser.add_argument("--cpus", type=float, help="and this many CPUs' worth of time (with --memory-mb)")
    parser.add_argument("--rebuild-after", type=float, help="seconds into the load to start an index rebuild")
    args = parser.parse_args()
    paths = mixed_paths(args.home / "catalog.db", args.paths, args.seed)
    port = free_port()
    env = dict(os.environ, LIBRARY_HOME=str(args.home), LIBRARY_DISK_RESERVE_MB="0", LIBRARY_WORKERS=str(args.workers))
    group = CgroupLimits("library-soak", args.memory_mb, args.cpus) if args.memory_mb else None
    python = box_python(args.box_venv)
    server = subprocess.Popen([python, "-m", "appliance.cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=group.join if group else None)
    base = f"http://127.0.0.1:{port}"
    rebuild: dict = {}

    def rebuild_index() -> None:
        time.sleep(args.rebuild_after)
        t0 = time.perf_counter()
        # What the server runs for the librarian's button (appliance.jobs.child), in its group.
        job = subprocess.run([python, "-m", "appliance.jobs.child", "--parent", str(os.getpid()), "rebuild-index"],
                             env=Settings.from_env(env).child_env(), capture_output=True, text=True, preexec_fn=group.join if group else None)
        rebuild.update(started_s=args.rebuild_after, seconds=round(time.perf_counter() - t0, 1),
                       ended_before_the_load=not load_ended.is_set(), exit_status=job.returncode,
                       stderr_tail=job.stderr[-300:])

    load_ended, done = threading.Event(), threading.Event()
    if group:
        threading.Thread(target=group.watch, args=(done,), daemon=True).start()
    rebuilding = threading.Thread(target=rebuild_index, daemon=True)
    try:
        wait_answer(base + "/", server)
        if args.rebuild_after is not None:
            rebuilding.start()
        result = run_soak(server.pid, base, paths, args.minutes, args.clients, Path(tempfile.mkdtemp()) / "soak.lua")
        load_ended.set()
        if rebuilding.is_alive():
            rebuilding.join()  # the group's highest memory takes in the whole rebuild
        errors = result.pop("errors")
        report = {"home": str(args.home), "minutes": args.minutes, "clients": args.clients, "workers": args.workers,
                  **result, "errors": errors["socket"] + errors["status"]}
        if args.rebuild_after is not None:
            report["rebuild"] = rebuild
        done.set()
        if group:
            report["cgroup"] = group.report()
        print(json.dumps(report, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if group:
            group.remove()


if __name__ == "__main__":
    main()

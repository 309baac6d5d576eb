"""The box under a long mixed load: memory over time, throughput, latency and errors.

    python bench/bench_soak.py --home /tmp/bench-core/home-10000 --minutes 10 --clients 20

Starts ``library serve`` on the given data folder (on 127.0.0.1), then runs ``wrk`` for
``--minutes`` with a script that walks through what phones ask for, in a fixed mix: the home
page, searches (titles, authors and words from the catalog, each different), book pages,
chapters, covers, downloads and OPDS feeds. The server's RSS is read from /proc every 15 s.
Prints a JSON report (RSS at start / after the first minute / at the end / highest, requests/s,
latency p50/p95/p99, errors). Nothing here runs in CI.
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

from appliance.textfold import fold  # noqa: E402

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
    args = parser.parse_args()
    paths = mixed_paths(args.home / "catalog.db", args.paths, args.seed)
    port = free_port()
    env = dict(os.environ, LIBRARY_HOME=str(args.home), LIBRARY_DISK_RESERVE_MB="0")
    server = subprocess.Popen([box_python(args.box_venv), "-m", "appliance.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_answer(base + "/", server)
        result = run_soak(server.pid, base, paths, args.minutes, args.clients, Path(tempfile.mkdtemp()) / "soak.lua")
        errors = result.pop("errors")
        report = {"home": str(args.home), "minutes": args.minutes, "clients": args.clients, **result,
                  "errors": errors["socket"] + errors["status"]}
        print(json.dumps(report, indent=1))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

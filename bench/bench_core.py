"""The box's core end to end: import rate, index size, search latency over HTTP, server memory.

    python bench/bench_core.py --books 10000 --work /tmp/bench-core

Makes N EPUBs from the real corpus text (bench/catalog_gen.py, the real corpus books included),
imports them with ``library import`` (timed: books/s and MB/s), measures the catalog and index on
disk, starts ``library serve`` on 127.0.0.1 and runs searches one after another over HTTP:
unaccented titles, accented titles, author names and three-word phrases from inside the books.
Reports p50/p95/max latency and the server's RSS (VmRSS and VmHWM from /proc). Nothing here runs
in CI; paste the printed table into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from boxenv import DEFAULT, box_python  # noqa: E402


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def proc_memory(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency_ms(times: list[float]) -> dict[str, float]:
    """p50 (the median), p95 and max of ``times`` (ms), to a tenth of a millisecond."""
    ordered = sorted(times) or [0.0]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1),
            "max": round(ordered[-1], 1)}


def make_queries(db_path: Path, count: int, seed: int) -> list[tuple[str, str, int]]:
    """(kind, query, expected book id) drawn from the catalog itself."""
    # Imported here: bench_peers imports this module in the peers' environment too, which has no NumPy.
    from appliance.textfold import fold

    rng = random.Random(seed)
    conn = sqlite3.connect(db_path)
    ids = [r[0] for r in conn.execute("SELECT id FROM books")]
    queries = []
    for book_id in rng.sample(ids, min(count, len(ids))):
        title = conn.execute("SELECT title FROM books WHERE id = ?", [book_id]).fetchone()[0]
        kind = rng.choice(["title", "title-accented", "author", "phrase"])
        if kind == "title":
            queries.append((kind, fold(title), book_id))
        elif kind == "title-accented":
            queries.append((kind, title, book_id))
        elif kind == "author":
            row = conn.execute("SELECT a.name FROM authors a JOIN book_authors ba ON ba.author_id = a.id "
                               "WHERE ba.book_id = ? LIMIT 1", [book_id]).fetchone()
            queries.append((kind, fold(row[0]) if row else fold(title), book_id))
        else:
            row = conn.execute("SELECT text_z FROM chapters WHERE book_id = ? ORDER BY position LIMIT 1",
                               [book_id]).fetchone()
            words = zlib.decompress(row[0]).decode().split() if row and row[0] else []
            if len(words) > 20:
                start = rng.randrange(0, len(words) - 4)
                queries.append((kind, '"' + fold(" ".join(words[start:start + 3])) + '"', book_id))
            else:
                queries.append(("title", fold(title), book_id))
    conn.close()
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-core"))
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--box-venv", type=Path, default=DEFAULT, help="made with the box's own dependencies only")
    args = parser.parse_args()
    work = args.work
    books_dir, home = work / f"books-{args.books}", work / f"home-{args.books}"
    library = [box_python(args.box_venv), "-m", "appliance.cli.main"]
    env = dict(os.environ, LIBRARY_HOME=str(home), LIBRARY_DISK_RESERVE_MB="0")
    report: dict = {"books": args.books, "load_before": os.getloadavg()}

    if not books_dir.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "catalog_gen.py"), "--books", str(args.books),
                        "--out", str(books_dir)], check=True)
    files = list(books_dir.rglob("*.epub"))
    report["files"], report["files_mb"] = len(files), round(folder_mb(books_dir), 1)
    if not (home / "catalog.db").exists():
        start = time.perf_counter()
        subprocess.run(library + ["import", str(books_dir)], env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        report["import_seconds"] = round(seconds, 1)
        report["import_books_per_s"] = round(len(files) / seconds, 1)
        report["import_mb_per_s"] = round(report["files_mb"] / seconds, 2)
    conn = sqlite3.connect(home / "catalog.db")
    report["catalog_books"] = conn.execute("SELECT count(*) FROM books").fetchone()[0]
    conn.close()
    report["catalog_db_mb"] = round((home / "catalog.db").stat().st_size / 1e6, 1)
    report["index_mb"] = round(folder_mb(home / "index"), 1)
    report["blobs_mb"] = round(folder_mb(home / "blobs"), 1)

    port = free_port()
    server = subprocess.Popen(library + ["serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(base + "/api/languages", timeout=2).read()
                break
            except OSError:
                if time.perf_counter() - started > 120:
                    raise
                time.sleep(0.05)
        report["cold_start_s"] = round(time.perf_counter() - started, 2)
        queries = make_queries(home / "catalog.db", args.queries, args.seed)
        for _kind, q, _id in queries[:20]:  # warm the searcher once, as after the first reader
            urllib.request.urlopen(f"{base}/api/search?q={urllib.parse.quote(q)}", timeout=30).read()
        times, found, first = [], 0, 0
        by_kind: dict[str, list[float]] = {}
        for kind, q, book_id in queries:
            t0 = time.perf_counter()
            body = urllib.request.urlopen(f"{base}/api/search?q={urllib.parse.quote(q)}", timeout=30).read()
            elapsed = (time.perf_counter() - t0) * 1000
            times.append(elapsed)
            by_kind.setdefault(kind, []).append(elapsed)
            ids = [b["id"] for b in json.loads(body)["books"]]
            found += book_id in ids
            first += bool(ids) and ids[0] == book_id
        report["search_ms"] = latency_ms(times)
        report["search_p95_by_kind_ms"] = {k: latency_ms(v)["p95"] for k, v in sorted(by_kind.items())}
        report["found_on_first_page"] = f"{found}/{len(queries)}"
        report["found_first"] = f"{first}/{len(queries)}"
        report["server_memory_mb"] = {k: round(v, 1) for k, v in proc_memory(server.pid).items()}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

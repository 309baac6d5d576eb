"""The box, Calibre-Web and kiwix-serve under the same long mixed load: memory over time.

    python bench/bench_peers_soak.py --work /tmp/bench-peers --minutes 10 --clients 20

Uses the books and the servers ``bench_peers.py`` prepared in ``--work`` (run it first; this
prepares them the same way if it has not). For each server in turn: start it, run ``wrk`` for
``--minutes`` with a walk through the pages phones ask for, in the mix of ``bench_soak.py`` (per
20 requests: 3 home, 5 search, 4 book, 4 chapter, 2 cover, 1 download, 1 OPDS root), over books
every server has (covers: of books that have one), read the server's RSS from /proc every 15 s,
stop it. A page a server does not have (Calibre-Web renders chapters in the browser from the EPUB; kiwix-serve has no covers and no
downloads) is replaced by that book's page there, so every server answers the same number of
requests per walk. Searches are two folded words of a title or an author, each different.
Prints a JSON report and a table. Nothing here runs in CI.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_peers import WRK_SCRIPT, Server, prepare_servers, proc_stats, server_arguments  # noqa: E402
from bench_soak import REQUESTS  # noqa: E402

MIX = ["home"] * 3 + ["search"] * 5 + ["book"] * 4 + ["chapter"] * 4 + ["cover"] * 2 + ["download", "opds"]


def walk(server: Server, books: list[dict], count: int, seed: int) -> list[str]:
    """``count`` paths of ``server`` in the mix, over ``books`` (the same draw for every server)."""
    from appliance.textfold import fold

    rng = random.Random(seed)
    with_covers = [b for b in books if b["cover"]]
    out = []
    for n in range(count):
        kind = MIX[n % len(MIX)]
        book = rng.choice(with_covers if kind == "cover" else books)
        words = fold(rng.choice([book["title"], *book["authors"]] or [book["title"]])).split()
        start = rng.randrange(max(1, len(words) - 1))
        query = " ".join(words[start:start + 2]) or "sach"
        server.set_paths(book, query)
        out.append(server.paths.get(kind) or server.paths["book"])
    return out


def soak(server: Server, paths: list[str], minutes: float, clients: int, work: Path) -> dict:
    script = work / f"soak-{server.name}.lua"
    script.write_text(REQUESTS % ", ".join(json.dumps(p) for p in paths) + WRK_SCRIPT)
    server.run()
    samples: list[tuple[int, float]] = []
    stop = threading.Event()
    try:
        start_rss = proc_stats(server.proc.pid)["VmRSS"]

        def sample() -> None:
            t0 = time.perf_counter()
            while not stop.wait(15):
                samples.append((round(time.perf_counter() - t0), round(proc_stats(server.proc.pid)["VmRSS"], 1)))

        threading.Thread(target=sample, daemon=True).start()
        out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{int(minutes * 60)}s", "--timeout", "10s", "-s",
                              str(script), server.base], capture_output=True, text=True, check=True).stdout
        stop.set()
        result = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
        end = proc_stats(server.proc.pid)
        return {"requests_per_s": round(result["requests"] / (result["duration_us"] / 1e6), 1),
                "latency_ms": {k: result[k] for k in ("p50", "p95", "p99")},
                "errors": {"socket": result["socket_errors"], "status": result["status_errors"]},
                "rss_mb": {"start": round(start_rss, 1),
                           "after_1_min": next((m for t, m in samples if t >= 60), None),
                           "end": round(end["VmRSS"], 1), "highest": round(end["VmHWM"], 1)},
                "cpu_s": round(end["cpu_s"], 1), "rss_samples": samples}
    finally:
        stop.set()
        server.stop()


def main() -> None:
    parser = server_arguments(__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--paths", type=int, default=20_000, help="requests in the walk")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    _, books, (box, cw, kiwix) = prepare_servers(args)
    in_calibre = cw.titles()
    shared = [b for b in books if b["chapters"] and b["title"].casefold() in in_calibre]
    cw.titles = lambda: in_calibre  # set_paths looks the book up once per path
    report: dict = {"books": len(shared), "minutes": args.minutes, "clients": args.clients,
                    "load_before": os.getloadavg(), "servers": {}}
    for server in (box, cw, kiwix):
        report["servers"][server.name] = soak(server, walk(server, shared, args.paths, args.seed), args.minutes,
                                              args.clients, args.work)
    report["load_after"] = os.getloadavg()
    (args.work / "soak-report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print("\n| server | requests/s | p50 / p95 / p99 ms | errors (socket / HTTP) | RSS start / 1 min / end (highest) | CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in report["servers"].items():
        lat, rss = r["latency_ms"], r["rss_mb"]
        print(f"| {name} | {r['requests_per_s']} | {lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f} "
              f"| {r['errors']['socket']} / {r['errors']['status']} | {rss['start']:.0f} / {rss['after_1_min'] or 0:.0f} / {rss['end']:.0f} "
              f"({rss['highest']:.0f}) MB | {r['cpu_s']:.0f} |")


if __name__ == "__main__":
    main()

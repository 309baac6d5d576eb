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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_peers import Server, prepare_servers, server_arguments  # noqa: E402
from bench_soak import run_soak  # noqa: E402

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
    server.run()
    try:
        return run_soak(server.proc.pid, server.base, paths, minutes, clients, work / f"soak-{server.name}.lua")
    finally:
        server.stop()


def main() -> None:
    parser = server_arguments(__doc__)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--paths", type=int, default=20_000, help="requests in the walk")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    _, books, servers = prepare_servers(args)
    shared = [b for b in books if b["chapters"]]
    report: dict = {"books": len(shared), "minutes": args.minutes, "clients": args.clients,
                    "load_before": os.getloadavg(), "servers": {}}
    for server in servers:
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

"""Phones' pages while the librarian rebuilds the search index: the rebuild in a thread of the
server (as the system page's button ran it before), in a process of its own (as it runs now), or
no rebuild.

    python bench/bench_jobs.py --home /tmp/bc1k/home --clients 20 --seconds 20

Serves the data folder with waitress in this process (one process, as ``library serve`` runs by
default) on 127.0.0.1, and for each way runs ``wrk`` with the mix of pages of bench_soak.py (home,
searches each different, book pages, chapters, covers, downloads, OPDS) while the rebuild runs.
Prints a JSON report per way: requests/s, p50/p95/p99, errors, and whether the rebuild was still
running when wrk ended (it must be, for the figures to be those of a rebuild). The rebuild makes a
new index generation of the data folder, as `library reindex` would. Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_peers import WRK_SCRIPT, run_wrk  # noqa: E402
from bench_soak import REQUESTS, mixed_paths  # noqa: E402

from appliance import indexing  # noqa: E402
from appliance.app import create_app  # noqa: E402
from appliance.httpserver import create_server  # noqa: E402
from appliance.settings import Settings  # noqa: E402

WAYS = ("none", "thread", "process")


def rebuild_in_thread(app) -> threading.Thread:
    """The index rebuilt in a thread of the server, as the button did before."""
    state = app.extensions["library"]

    def rebuild() -> None:
        db = state.connect_db()
        try:
            with state.index_lock:
                indexing.rebuild(db, state.index)
        finally:
            db.close()

    thread = threading.Thread(target=rebuild, name="rebuild-in-thread", daemon=True)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a data folder with books (bench_core, catalog_gen)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--ways", default=",".join(WAYS))
    args = parser.parse_args()
    settings = Settings(home=args.home, disk_reserve_mb=0)
    app = create_app(settings)
    server = create_server(app, host="127.0.0.1", port=0, threads=settings.threads, ident="library")
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{server.effective_port}"
    jobs = app.extensions["jobs"]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "mix.lua"
        paths = mixed_paths(settings.db_path, 4000, seed=7)
        script.write_text(REQUESTS % ", ".join(json.dumps(p) for p in paths) + WRK_SCRIPT)
        run_wrk(url, args.clients, 5, script)  # warm the caches the three runs share
        for way in args.ways.split(","):
            running = lambda: False  # noqa: E731
            started = time.monotonic()
            if way == "thread":
                running = rebuild_in_thread(app).is_alive
            elif way == "process":
                assert jobs.start_index_rebuild()
                running = jobs.rebuild_running
            time.sleep(1.0)  # the rebuild under way
            report = run_wrk(url, args.clients, args.seconds, script)
            report.update(way=way, rebuild_still_running=running())
            while running():
                time.sleep(0.5)
            report["rebuild_seconds"] = round(time.monotonic() - started, 1) if way != "none" else None
            print(json.dumps(report), flush=True)
    server.close()
    app.extensions["library"].close()


if __name__ == "__main__":
    main()

"""Phones' pages while the librarian rebuilds the search index (or the server indexes a release's
books): the job in a thread of the server (as it ran before), in a process of its own (as it runs
now), or no job.

    python bench/bench_jobs.py --home /tmp/bc1k/home --clients 20 --seconds 20
    python bench/bench_jobs.py --home /tmp/bc1k/home --release /tmp/release   # thread/ and process/

Serves the data folder with waitress in this process (one process, as ``library serve`` runs by
default) on 127.0.0.1, and for each way runs ``wrk`` with the mix of pages of bench_soak.py (home,
searches each different, book pages, chapters, covers, downloads, OPDS) while the rebuild runs.
Prints a JSON report per way: requests/s, p50/p95/p99, errors, and whether the job was still
running when wrk ended (it must be, for the figures to be those of the job). The rebuild makes a
new index generation of the data folder, as `library reindex` would; a release's books stay in
its catalog. Nothing here runs in CI.
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

from appliance.books.importer import Importer
from appliance.jobs import child as childjobs
from appliance.search import upkeep as indexing
from appliance.server.http import create_server, serve_until
from appliance.settings import Settings
from appliance.storage import db as dbmod
from appliance.web.factory import create_app

WAYS = ("none", "thread", "process")


def in_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work, name="job-in-thread", daemon=True)
    thread.start()
    return thread


def here(app, job: str):
    """``job`` in a thread of the server, as it ran before."""
    state = app.extensions["library"]

    def work() -> None:
        db = state.connect_db()
        try:
            with state.index_lock:
                if job == "rebuild":
                    indexing.rebuild(db, state.index)
                else:
                    indexing.catch_up(db, state.index)
        finally:
            db.close()

    return work


def queue_release(settings: Settings, folder: Path) -> int:
    """The books of ``folder`` put in the catalog and the index's queue, as the sync agent's
    process leaves a release it installed."""
    db = dbmod.connect(settings.db_path)
    try:
        return len(Importer(settings, db, None).import_paths([folder]).imported)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a data folder with books (bench_core, catalog_gen)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--release", type=Path,
                        help="instead of a rebuild, index a release: the EPUBs of RELEASE/thread for the thread's "
                             "run and of RELEASE/process for the process's (different books, e.g. catalog_gen.py "
                             "--no-real with two seeds), put in the catalog's queue just before")
    args = parser.parse_args()
    settings = Settings(home=args.home, disk_reserve_mb=0)
    app = create_app(settings)
    server = create_server(app, host="127.0.0.1", port=0, threads=settings.threads, ident="library")
    stopping = threading.Event()  # the server's loop closes its own sockets when told (as `library serve`)
    serving = threading.Thread(target=serve_until, args=(server, stopping, 0.1), daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.effective_port}"
    jobs = app.extensions["jobs"]
    job = "catch-up" if args.release else "rebuild"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "mix.lua"
        paths = mixed_paths(settings.db_path, 4000, seed=7)
        script.write_text(REQUESTS % ", ".join(json.dumps(p) for p in paths) + WRK_SCRIPT)
        run_wrk(url, args.clients, 5, script)  # warm the caches the three runs share
        for way in args.ways.split(","):
            queued = queue_release(settings, args.release / way) if args.release and way != "none" else 0
            running = lambda: False  # noqa: E731
            started = time.monotonic()
            if way == "thread":
                running = in_thread(here(app, job)).is_alive
            elif way == "process" and job == "rebuild":
                assert jobs.start_index_rebuild()
                running = jobs.rebuild_running
            elif way == "process":  # as the keeper does: waits in a thread for the job's process
                running = in_thread(lambda: childjobs.run(settings, "catch-up")).is_alive
            time.sleep(1.0)  # the job under way
            report = run_wrk(url, args.clients, args.seconds, script)
            report.update(way=way, job=job, books_queued=queued, job_still_running=running())
            while running():
                time.sleep(0.5)
            report["job_seconds"] = round(time.monotonic() - started, 1) if way != "none" else None
            print(json.dumps(report), flush=True)
    stopping.set()
    serving.join(10)
    app.extensions["library"].close()


if __name__ == "__main__":
    main()

"""What recording statistics costs a request: the same requests with and without it, in one process.

    python bench/bench_stats.py --requests 10000

Builds a small catalog, then alternates rounds of GET /books/<id> through the Flask test client with
statistics on and off (``appliance.stats.counts`` pointed at the catalog, or at nothing), and reports the
median time per request of each, their ratio, and how long the writer took to store the events.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.books.demo import write_demo_catalog
from appliance.settings import Settings
from appliance.stats import counts as stats
from appliance.web.factory import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home", disk_reserve_mb=0)
        from appliance.books.importer import Importer
        from appliance.storage import db as dbmod

        db = dbmod.connect(settings.db_path)
        Importer(settings, db, None).import_paths(write_demo_catalog(Path(tmp) / "demo"))
        db.close()
        app = create_app(settings)
        client = app.test_client()
        recorder = app.extensions["library"].stats
        per_round = args.requests // args.rounds
        on, off = [], []
        for _ in range(args.rounds):
            for enabled, times in ((True, on), (False, off)):
                stats._recorder = recorder if enabled else None
                start = time.perf_counter()
                for n in range(per_round):
                    client.get(f"/books/{n % 5 + 1}")
                times.append((time.perf_counter() - start) / per_round * 1e6)
        stats._recorder = recorder
        start = time.perf_counter()
        written = recorder.flush()
        flush_ms = (time.perf_counter() - start) * 1000
        db = dbmod.connect(settings.db_path)
        stored = db.execute("SELECT sum(count) FROM stats_counts").fetchone()[0]
        db.close()
        print(f"requests with statistics: {len(on) * per_round}, stored events: {stored} (last flush wrote {written})")
        print(f"median µs per request, statistics on : {statistics.median(on):8.1f}")
        print(f"median µs per request, statistics off: {statistics.median(off):8.1f}")
        print(f"ratio on/off: {statistics.median(on) / statistics.median(off):.3f}")
        print(f"last flush: {flush_ms:.1f} ms")
        app.extensions["library"].close()


if __name__ == "__main__":
    main()

"""What many small index updates do to the search index, and what compacting it gives back.

    .venv/bin/python bench/bench_segments.py --home /tmp/bench-core/home-1000 \
        --books /tmp/bench-core/books-10000 --updates 20 --per 30

A box's index grows a segment with each update: a bundle, a librarian's edit, an import. This
copies the box at ``--home`` into ``--work`` and, as a box in the field would receive them, imports
``--updates`` batches of ``--per`` books it does not have yet (taken in name order from
``--books``, one ``library import`` each). It measures the index (size on disk, segments) and 300
searches drawn from the catalog (in this process, one at a time, snippets not kept between
searches) at four points: before, after the updates, after ``indexing.compact`` (what the server
does when readers leave it idle) and after a whole rebuild in one process (``library reindex
--jobs 1``). Nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_core import folder_mb, latency_ms, make_queries  # noqa: E402

from appliance.search import upkeep as indexing
from appliance.search.index import SearchIndex
from appliance.storage import db as dbmod


def measure(home: Path, queries: list[tuple[str, str, int]]) -> dict:
    index = SearchIndex(home / "index")
    try:
        for _, q, _ in queries[:30]:  # the index's tables read, as after a server's first searches
            index.search(q)
        times, found = [], 0
        for _, q, expected in queries:
            index._snippets.clear()
            started = time.perf_counter()
            page = index.search(q)
            times.append((time.perf_counter() - started) * 1000)
            found += any(hit.book_id == expected for hit in page.hits)
        return {"segments": index.segment_count(), "index_mb": round(folder_mb(home / "index"), 1),
                "search_ms": latency_ms(times), "expected_on_first_page": found}
    finally:
        index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a box's data folder (copied, not changed)")
    parser.add_argument("--books", type=Path, required=True, help="a folder of EPUBs, some the box does not have")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--per", type=int, default=30)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-segments")
    args = parser.parse_args()
    home = args.work / "box"
    shutil.rmtree(home, ignore_errors=True)
    home.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(args.home, home)
    env = dict(os.environ, LIBRARY_HOME=str(home), LIBRARY_DISK_RESERVE_MB="0")
    db = dbmod.connect(home / "catalog.db")
    have = {row[0] for row in db.execute("SELECT file_name FROM books")}
    fresh = [p for p in sorted(args.books.glob("*.epub")) if p.name not in have][:args.updates * args.per]
    queries = make_queries(home / "catalog.db", 300, 11)
    report: dict = {"books": db.execute("SELECT count(*) FROM books").fetchone()[0],
                    "updates": args.updates, "per": args.per, "before": measure(home, queries)}
    print(json.dumps(report["before"]), flush=True)
    started = time.perf_counter()
    for n in range(args.updates):
        batch = fresh[n * args.per:(n + 1) * args.per]
        subprocess.run([sys.executable, "-m", "appliance.cli.main", "import", "--jobs", "1", *map(str, batch)], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    report["updates_s"] = round(time.perf_counter() - started, 1)
    report["after_updates"] = measure(home, queries)
    print(json.dumps(report["after_updates"]), flush=True)
    index = SearchIndex(home / "index")
    started = time.perf_counter()
    report["compacted_segments"] = indexing.compact(db, index)
    report["compact_s"] = round(time.perf_counter() - started, 1)
    index.close()
    report["after_compact"] = measure(home, queries)
    print(json.dumps(report["after_compact"]), flush=True)
    index = SearchIndex(home / "index")
    started = time.perf_counter()
    indexing.rebuild(db, index)
    report["rebuild_s"] = round(time.perf_counter() - started, 1)
    index.close()
    report["after_rebuild"] = measure(home, queries)
    db.close()
    (args.work / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Building and applying a release of N books, and what a 1 % update costs on the wire.

    python bench/bench_bundles.py --books 1000 --work /tmp/bench-bundles

Makes N EPUBs from the real corpus text (bench/catalog_gen.py, generated books only), builds
release 1 of a channel (timed, peak RSS of the process), applies it to an empty box (timed, peak
RSS), then changes 1 % of the books, builds release 2 and applies it, counting the bytes the box
read from the release tree. Prints JSON; nothing here runs in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints JSON; add its wall time and peak RSS."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


PEAK = "import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"

BUILD = """
import json, sys
from pathlib import Path
from content_sync.protocol import minisign, releases as bundles
from content_sync import publishing
key = minisign.parse_secret_key(Path({key!r}).read_text())
r = publishing.build_release(Path({src!r}), "bench", key, Path({tree!r}))
{peak}
print(json.dumps({{"version": r.version, "items": r.items, "new_blobs": r.new_blobs, "peak_rss_mb": round(peak)}}))
"""

APPLY = """
import json, os
from pathlib import Path
from appliance.settings import Settings
from appliance.storage import db as dbmod
from content_sync.sync import apply
from content_sync.sync.sources import FolderSource
settings = Settings(home=Path({home!r}), disk_reserve_mb=0)
db = dbmod.connect(settings.db_path)
apply.subscribe(db, "bench")
source = FolderSource(Path({tree!r}))
r = apply.apply_release(settings, db, source, "bench")
{peak}
print(json.dumps({{"version": r.new_version, "added": r.added, "updated": r.updated, "fetched_blobs": r.fetched_blobs,
                  "bytes_read": source.bytes_read, "peak_rss_mb": round(peak)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--books", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-bundles"))
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    src, tree, home = work / "src", work / "tree", work / "box"
    subprocess.run([sys.executable, str(ROOT / "bench" / "catalog_gen.py"), "--books", str(args.books), "--out",
                    str(src), "--no-real"], check=True, stdout=subprocess.DEVNULL)
    from content_sync.protocol import minisign

    secret, public = minisign.write_key_pair(work / "keys", "publisher")
    (home / "keys" / "publishers").mkdir(parents=True)
    shutil.copy(public, home / "keys" / "publishers" / "publisher.pub")
    files = sorted(src.rglob("*.epub"))
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    report: dict = {"books": len(files), "release_mb": round(size_mb, 1), "load_before": os.getloadavg()}
    report["build_1"] = run_child(BUILD.format(key=str(secret), src=str(src), tree=str(tree), peak=PEAK))
    report["apply_1"] = run_child(APPLY.format(home=str(home), tree=str(tree), peak=PEAK))

    # Change 1 % of the books: rewrite them with other text so their files (and hashes) change.
    from appliance.books.demo import DemoBook, DemoChapter, write_epub

    rng = random.Random(5)
    changed = rng.sample(files, max(1, len(files) // 100))
    changed_bytes = 0
    for path in changed:
        book = DemoBook(title=f"Bản sửa {path.stem}", authors=("Biên tập viên",), language="vi",
                        chapters=(DemoChapter("Lời nói đầu", ("Bản in lại, có sửa chữa.",) * 40),))
        write_epub(path, book)
        changed_bytes += path.stat().st_size
    report["changed_books"] = len(changed)
    report["changed_mb"] = round(changed_bytes / 1e6, 3)
    report["build_2"] = run_child(BUILD.format(key=str(secret), src=str(src), tree=str(tree), peak=PEAK))
    report["apply_2"] = run_child(APPLY.format(home=str(home), tree=str(tree), peak=PEAK))
    manifest = tree / "channels" / "bench" / "2" / "manifest.json"
    report["manifest_2_bytes"] = manifest.stat().st_size
    report["update_bytes_over_changed_plus_manifest"] = round(
        report["apply_2"]["bytes_read"] / (changed_bytes + manifest.stat().st_size), 3)
    report["load_after"] = os.getloadavg()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Make tests/storage/data/catalog-<commit>.db: a catalog as the box at an earlier commit left it.

Usage: python tests/storage/make_old_catalog.py [COMMIT]   (default: the last commit before the
migrations were named in the order they run)

It checks the commit out in a temporary git worktree, imports two generated books with that
version's ``library import``, adds a librarian, a channel subscription and a few statistics, and
keeps the catalog file (VACUUMed, with its WAL checkpointed). tests/storage/test_old_catalog.py
opens it with today's code.
"""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMIT = "e36aa85"

SETUP = r"""
import sys
from pathlib import Path
from appliance import auth, db as dbmod, stats
from content_sync import apply
home = Path(sys.argv[1])
db = dbmod.connect(home / "catalog.db")
auth.create_admin(db, "thu", "a long enough password 1")
apply.subscribe(db, "vi-literature")
db.close()
recorder = stats.init_stats(home / "catalog.db", flush_seconds=0)
for _ in range(3):
    stats.record_event("view", book_id=1)
stats.record_event("search", term="truyện", found=True)
recorder.flush()
"""


def main(commit: str = DEFAULT_COMMIT) -> Path:
    sys.path.insert(0, str(ROOT))
    from appliance.books.demo import DemoBook, DemoChapter, write_epub

    out = ROOT / "tests" / "storage" / "data" / f"catalog-{commit}.db"
    with tempfile.TemporaryDirectory() as tmp:
        work, home, books = Path(tmp) / "old", Path(tmp) / "home", Path(tmp) / "books"
        books.mkdir()
        subprocess.run(["git", "worktree", "add", "--detach", str(work), commit], cwd=ROOT, check=True)
        try:
            for n, (title, author) in enumerate((("Truyện ngắn", "Nam Cao"), ("Thơ", "Xuân Diệu"))):
                write_epub(books / f"{n}.epub", DemoBook(
                    title=title, authors=(author,), language="vi", identifier=f"urn:old:{n}",
                    chapters=(DemoChapter("Chương 1", (f"{title} của {author}.",)),)))
            env = {"PYTHONPATH": str(work), "LIBRARY_HOME": str(home), "PATH": "/usr/bin:/bin"}
            subprocess.run([sys.executable, "-m", "appliance.cli", "import", str(books)], env=env, check=True,
                           cwd=work)
            subprocess.run([sys.executable, "-c", SETUP, str(home)], env=env, check=True, cwd=work)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=ROOT, check=True)
        conn = sqlite3.connect(home / "catalog.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("VACUUM")
        conn.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(home / "catalog.db", out)
    return out


if __name__ == "__main__":
    print(main(*sys.argv[1:]))

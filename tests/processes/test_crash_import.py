"""Power cuts during an import, a rebuild or a compaction of the index: kill -9 at random moments, then restart."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from appliance.search import upkeep as indexing
from appliance.search.index import SearchIndex
from appliance.storage import db as dbmod
from appliance.storage.blobs import BlobStore


def _left_running(home, seconds: float = 10.0) -> list[int]:
    """Processes still running with this test's LIBRARY_HOME (an import's or a rebuild's workers)
    once ``seconds`` have passed, or as soon as there are none."""
    key = f"LIBRARY_HOME={home}".encode()
    deadline = time.monotonic() + seconds
    while True:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        if key in f.read().split(b"\0"):
                            found.append(int(entry))
                except OSError:
                    continue
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


@pytest.mark.slow
def test_kill_during_import_leaves_a_sound_catalog(settings, make_epub, tmp_path):
    folder = tmp_path / "many"
    words = "thư viện đường về bản núi rừng sông suối mùa xuân lúa ngô".split()
    rng = random.Random(7)
    for n in range(40):
        paragraphs = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(30)]
        make_epub(title=f"Sách số {n} {words[n % len(words)]}", folder=folder,
                  chapters=[(f"Chương {k}", paragraphs) for k in range(1, 4)])
    env = dict(os.environ, LIBRARY_HOME=str(settings.home), LIBRARY_DISK_RESERVE_MB="0")
    command = [sys.executable, "-m", "appliance.cli.main", "import", "--jobs", "2", str(folder)]
    for trial in range(6):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.4 + rng.random() * 1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _left_running(settings.home) == [], f"trial {trial}: the import's workers outlived it"
        db = dbmod.connect(settings.db_path)
        assert dbmod.integrity_ok(db), f"trial {trial}: integrity check failed"
        blobs = BlobStore(settings.blobs_dir)
        for (sha,) in db.execute("SELECT sha256 FROM books"):
            assert blobs.verify(sha), f"trial {trial}: catalog row without its file"
        index = SearchIndex(settings.index_dir)
        outcome = indexing.ensure_index(db, index)
        assert outcome in ("rebuilt", "caught-up", "current")
        count = db.execute("SELECT count(*) FROM books").fetchone()[0]
        if count:
            title = db.execute("SELECT title FROM books ORDER BY id LIMIT 1").fetchone()[0]
            found = index.search(title.replace("Sách số", "sach so"))
            assert found.total >= 1
        assert index.book_ids() == {r[0] for r in db.execute("SELECT id FROM books")}
        index.close()
        db.close()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    db = dbmod.connect(settings.db_path)
    assert db.execute("SELECT count(*) FROM books").fetchone()[0] == 40
    index = SearchIndex(settings.index_dir)
    indexing.ensure_index(db, index)
    assert index.search("sach so 17").total >= 1
    index.close()
    db.close()


@pytest.mark.slow
def test_kill_during_index_rebuild_then_search_works(settings, make_epub, tmp_path):
    folder = tmp_path / "books"
    rng = random.Random(11)
    words = "gió mưa nương rẫy khèn trăng suối đá nhà sàn bếp lửa".split()
    for n in range(30):
        paragraphs = [" ".join(rng.choice(words) for _ in range(80)) for _ in range(40)]
        make_epub(title=f"Truyện bản {n}", folder=folder, chapters=[(f"Phần {k}", paragraphs) for k in range(4)])
    for n in range(indexing.PARALLEL_BOOKS - 30):  # enough books for a rebuild in two parts
        make_epub(title=f"Sổ tay {n}", folder=folder, chapters=[("Một", [" ".join(rng.choice(words) for _ in range(200))])])
    env = dict(os.environ, LIBRARY_HOME=str(settings.home), LIBRARY_DISK_RESERVE_MB="0")
    assert subprocess.run([sys.executable, "-m", "appliance.cli.main", "import", str(folder)], env=env,
                          capture_output=True, timeout=300).returncode == 0
    command = [sys.executable, "-m", "appliance.cli.main", "reindex", "--jobs", "2"]
    outcomes = set()
    for trial in range(6):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3 + rng.random() * 2.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _left_running(settings.home) == [], f"trial {trial}: the rebuild's workers outlived it"
        db = dbmod.connect(settings.db_path)
        assert dbmod.integrity_ok(db), f"trial {trial}: integrity check failed"
        index = SearchIndex(settings.index_dir)
        outcomes.add(indexing.ensure_index(db, index))
        assert index.search("truyen ban 7").total >= 1, f"trial {trial}"
        assert index.book_ids() == {r[0] for r in db.execute("SELECT id FROM books")}
        index.close()
        db.close()
    assert outcomes <= {"rebuilt", "caught-up", "current"}


COMPACT = """
import sys
from appliance.storage import db as dbmod
from appliance.search import upkeep as indexing
from appliance.search.index import SearchIndex
db = dbmod.connect(sys.argv[1])
print(indexing.compact(db, SearchIndex(sys.argv[2])))
"""


@pytest.mark.slow
def test_kill_during_a_compaction_leaves_the_index_as_it_was_or_compacted(settings, make_epub, tmp_path):
    """The server's compaction cut at moments spread over the time a whole one takes (measured on a
    copy first): each time the index opens with every book in it, in its five segments or in the two
    a finished compaction leaves, and a last run ends it."""
    import shutil

    from tests.conftest import import_files

    rng = random.Random(13)
    words = "gió mưa nương rẫy khèn trăng suối đá nhà sàn bếp lửa".split()

    def books(first: int, count: int, folder: str) -> list:
        return [make_epub(title=f"Truyện bản {n}", folder=tmp_path / folder,
                          chapters=[(f"Phần {k}", [" ".join(rng.choice(words) for _ in range(80)) + f" dấu{n}"
                                                   for _ in range(30)]) for k in range(3)])
                for n in range(first, first + count)]

    import_files(settings, books(0, 40, "large"))
    for k in range(4):
        import_files(settings, books(40 + 15 * k, 15, f"small{k}"))
    everything = set(range(1, 101))

    def compaction(index_dir) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", COMPACT, str(settings.db_path), str(index_dir)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    shutil.copytree(settings.index_dir, tmp_path / "pristine")
    shutil.copytree(settings.index_dir, tmp_path / "copy")
    started = time.monotonic()
    out, err = compaction(tmp_path / "copy").communicate(timeout=300)
    whole = time.monotonic() - started
    assert out.strip() == "4", err
    seen = []
    for trial in range(5):
        # Each cut on the five segments as they were (a cut after the end would leave nothing to cut).
        shutil.rmtree(settings.index_dir)
        shutil.copytree(tmp_path / "pristine", settings.index_dir)
        proc = compaction(settings.index_dir)
        time.sleep(whole * (0.3 + 0.5 * rng.random()))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        index = SearchIndex(settings.index_dir)
        try:
            seen.append(index.segment_count())
            assert seen[-1] in (5, 2), f"trial {trial}"
            assert index.book_ids() == everything, f"trial {trial}"
            assert [index.search(f"dau{n}").total for n in range(100)] == [1] * 100, f"trial {trial}"
        finally:
            index.close()
    assert 5 in seen  # at least one cut landed inside a compaction
    out, err = compaction(settings.index_dir).communicate(timeout=300)
    assert out.strip() in ("4", "0"), err
    index = SearchIndex(settings.index_dir)
    try:
        assert index.segment_count() == 2 and index.book_ids() == everything
        assert [index.search(f"dau{n}").total for n in range(100)] == [1] * 100
    finally:
        index.close()


def test_a_blob_write_cut_short_leaves_a_file_the_next_start_removes(tmp_path):
    """A process killed while it writes a book into the store leaves its temporary file; the
    server's start removes it, and leaves alone one that a running process is still writing."""
    store = tmp_path / "blobs"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from appliance.storage.blobs import BlobStore\n"
        "def slow(out):\n"
        "    out.write(b'x' * 4096); out.flush(); print('writing', flush=True); time.sleep(60)\n"
        f"BlobStore(Path({str(store)!r}))._install('0' * 64, slow)\n")],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)  # the power cut
    writer.wait(timeout=10)
    [left] = store.glob(".incoming.*.tmp")
    mine = store / f".incoming.{os.getpid()}.abc123.tmp"  # a write under way in a running process
    mine.write_bytes(b"y")
    older = store / ".incoming.k2j4h5.tmp"  # named as before writers were named
    older.write_bytes(b"z")

    assert BlobStore(store).clean_temporaries() == 2
    assert not left.exists() and not older.exists() and mine.exists()
    assert BlobStore(store).put_bytes(b"a book")
    assert sorted(store.glob(".incoming.*")) == [mine]  # a finished write leaves nothing behind

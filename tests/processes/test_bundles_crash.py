"""Power cuts while a release is applied: SIGKILL at random moments, then look at what is left."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from appliance.storage import db as dbmod
from appliance.storage.blobs import BlobStore
from content_sync import publishing
from content_sync.protocol import minisign
from content_sync.sync import apply
from content_sync.sync.sources import FolderSource

CHANNEL = "school-grade-5"
TRIALS = 50


def state(home) -> tuple[int | None, frozenset, bool]:
    db = dbmod.connect(home / "catalog.db")
    try:
        assert dbmod.integrity_ok(db)
        version = apply.installed_version(db, CHANNEL)
        items = frozenset(db.execute("SELECT item_id, sha256 FROM channel_items").fetchall())
        blobs = BlobStore(home / "blobs")
        files_ok = all(blobs.verify(sha) for (sha,) in db.execute("SELECT sha256 FROM books"))
        covers_ok = all(blobs.exists(sha) for (sha,) in db.execute(
            "SELECT cover_sha256 FROM books WHERE cover_sha256 IS NOT NULL"))
        return version, items, files_ok and covers_ok
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_while_applying_leaves_old_or_new_never_a_mixture(settings, make_epub, tmp_path):
    rng = random.Random(20261124)
    secret, public = minisign.write_key_pair(tmp_path / "keys", "publisher")
    key = minisign.parse_secret_key(secret.read_text())
    src, tree = tmp_path / "src", tmp_path / "tree"
    words = "mặt trời mọc đằng đông học sinh đến trường cô giáo giảng bài".split()
    for n in range(30):
        paragraphs = [" ".join(rng.choice(words) for _ in range(50)) for _ in range(20)]
        make_epub(title=f"Bài học {n}", folder=src, name=f"bai-{n:02d}.epub",
                  chapters=[(f"Phần {k}", paragraphs) for k in range(3)])
    publishing.build_release(src, CHANNEL, key, tree)
    # Version 2 changes 10 books, removes 5 and adds 20.
    for n in range(10):
        make_epub(title=f"Bài học {n} (sửa)", folder=src, name=f"bai-{n:02d}.epub",
                  chapters=[("Mới", [" ".join(rng.choice(words) for _ in range(80))] * 20)])
    for n in range(25, 30):
        (src / f"bai-{n:02d}.epub").unlink()
    for n in range(30, 50):
        make_epub(title=f"Bài học {n}", folder=src, name=f"bai-{n:02d}.epub",
                  chapters=[(f"Phần {k}", [" ".join(rng.choice(words) for _ in range(60))] * 15) for k in range(3)])
    publishing.build_release(src, CHANNEL, key, tree)

    # The box with version 1 installed: the starting point of every trial.
    base = settings.home
    (base / "keys" / "publishers").mkdir(parents=True)
    shutil.copy(public, base / "keys" / "publishers" / "publisher.pub")
    db = dbmod.connect(settings.db_path)
    apply.subscribe(db, CHANNEL)
    (tree / "channels" / CHANNEL / "latest").write_text("1\n")
    apply.apply_release(settings, db, FolderSource(tree), CHANNEL)
    db.close()
    (tree / "channels" / CHANNEL / "latest").write_text("2\n")
    old = state(base)
    assert old[0] == 1 and old[2]

    trial_home = tmp_path / "trial"
    command = [sys.executable, "-m", "appliance.cli.main", "--home", str(trial_home), "sync", "once", "--from", str(tree)]
    env = dict(os.environ, LIBRARY_DISK_RESERVE_MB="0")
    shutil.copytree(base, trial_home)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    duration = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    new = state(trial_home)
    assert new[0] == 2 and new[2] and new[1] != old[1]

    outcomes = {1: 0, 2: 0}
    for trial in range(TRIALS):
        shutil.rmtree(trial_home)
        shutil.copytree(base, trial_home)
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration * 1.05))
        process.send_signal(signal.SIGKILL)
        process.wait()
        version, items, files_ok = state(trial_home)
        assert files_ok, f"trial {trial}: a book's file is missing or wrong"
        assert (version, items) in ((1, old[1]), (2, new[1])), f"trial {trial}: a mixture of releases"
        outcomes[version] += 1
        # The next run completes the update.
        if trial % 10 == 9:
            finish = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
            assert finish.returncode == 0, finish.stderr
            assert state(trial_home)[:2] == (2, new[1])
    assert outcomes[1] > 5, outcomes  # the kills did land while applying

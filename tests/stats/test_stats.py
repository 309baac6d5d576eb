"""Usage statistics: counted off the request path, nothing about readers, honest about the clock."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime

import pytest

from appliance.stats import counts as stats
from appliance.stats.clock import BoxClock
from appliance.stats.counts import apply_trusted_time
from appliance.storage import db as dbmod
from appliance.web.context import services
from content_sync.protocol import batches as statsbatch
from tests.conftest import import_files
from tests.support.admin import post_form

PROBE_AGENT = "Mozilla/5.0 (Linux; Android 8.1; PrivacyProbe) Chrome/99"


@pytest.fixture
def library(settings, make_epub):
    import_files(settings, [make_epub(title="Truyện Kiều", authors=["Nguyễn Du"]),
                            make_epub(title="Số đỏ", authors=["Vũ Trọng Phụng"])])
    return settings


def flush(app):
    services(app).library.stats.flush()


def counts(settings) -> dict:
    db = dbmod.connect(settings.db_path)
    try:
        return {(k, b, t): n for k, b, t, n in db.execute(
            "SELECT kind, book_id, term, sum(count) FROM stats_counts GROUP BY kind, book_id, term")}
    finally:
        db.close()


def test_views_downloads_and_searches_are_counted(app, client, library):
    for _ in range(3):
        client.get("/books/1")
    client.get("/books/2/download")
    client.get("/books/2/download", headers={"Range": "bytes=0-10"})  # a range is not another download
    client.get("/opds/books/1/download")
    client.get("/search?q=Truyện+Kiều")
    client.get("/search?q=truyen+kieu&page=2")  # the next page is not another search
    client.get("/search?q=khong+co+dau")
    flush(app)
    got = counts(library)
    assert got[("view", 1, "")] == 3
    assert got[("download_epub", 2, "")] == 1
    assert got[("download_opds", 1, "")] == 1
    assert got[("search", 0, "truyen kieu")] == 1
    assert got[("search", 0, "khong co dau")] == 1
    db = dbmod.connect(library.db_path)
    assert stats.unfound_searches(db)[0]["term"] == "khong co dau"
    db.close()


def test_recording_never_writes_on_the_request_path(app, client, library, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(stats, "write_events", broken)
    assert client.get("/books/1").status_code == 200  # the request does not notice
    with pytest.raises(RuntimeError):
        flush(app)
    monkeypatch.undo()
    flush(app)  # the events were kept and are written now
    assert counts(library)[("view", 1, "")] == 1


RECORDER = r"""
import sys, time
from pathlib import Path
from appliance.storage import db as dbmod
from appliance.stats import counts as stats
dbmod.connect(Path(sys.argv[1])).close()
stats.init_stats(Path(sys.argv[1]), flush_seconds=0.5)
n = 0
while True:
    for _ in range(50):
        stats.record_event("view", book_id=1)
        n += 1
    print(n, time.monotonic(), flush=True)
    time.sleep(0.02)
"""


@pytest.mark.slow
def test_processes_writing_counts_at_once_never_find_the_catalog_locked(settings):
    """Each of the server's processes writes its counts every second. A transaction that read the
    box clock before writing got "database is locked" at once when another had written in between,
    whatever the busy timeout; the catalog's transactions now wait for the write lock first."""
    dbmod.connect(settings.db_path).close()
    errors: list[Exception] = []

    def write(book: int) -> None:
        db = dbmod.connect(settings.db_path, migrate=False)  # one connection each, as one process each
        try:
            for _ in range(150):
                stats.write_events(db, [stats.Event("view", book, "", -1, time.monotonic())])
        except Exception as e:
            errors.append(e)
        finally:
            db.close()

    writers = [threading.Thread(target=write, args=(book,)) for book in (1, 2, 3)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    assert errors == []
    db = dbmod.connect(settings.db_path, migrate=False)
    try:
        assert db.execute("SELECT book_id, sum(count) FROM stats_counts GROUP BY book_id").fetchall() == [
            (1, 150), (2, 150), (3, 150)]
    finally:
        db.close()


def test_kill9_loses_at_most_the_last_seconds(settings):
    settings.home.mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", RECORDER, str(settings.db_path)], stdout=subprocess.PIPE,
                               text=True, cwd=os.getcwd())
    progress = []
    start = time.monotonic()
    while time.monotonic() - start < 4:
        line = process.stdout.readline()
        progress.append((int(line.split()[0]), time.monotonic()))
    process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    process.wait()
    db = dbmod.connect(settings.db_path)
    assert dbmod.integrity_ok(db)
    stored = db.execute("SELECT coalesce(sum(count), 0) FROM stats_counts").fetchone()[0]
    db.close()
    recorded_two_seconds_before = max(n for n, t in progress if t <= killed - 2)
    assert recorded_two_seconds_before <= stored <= progress[-1][0]


def test_nothing_identifying_a_reader_is_stored_or_exported(app, library, settings):
    client = app.test_client()
    client.set_cookie("reader_cookie", "cookie-value-8f3a")
    headers = {"User-Agent": PROBE_AGENT, "X-Forwarded-For": "203.0.113.77"}
    for _ in range(12):
        client.get("/search?q=" + urllib.parse.quote("truyện kiều"), headers=headers,
                   environ_base={"REMOTE_ADDR": "10.42.0.57"})
    for _ in range(3):
        client.get("/search?q=rare+private+words", headers=headers, environ_base={"REMOTE_ADDR": "10.42.0.57"})
    client.get("/books/1", headers=headers, environ_base={"REMOTE_ADDR": "10.42.0.57"})
    flush(app)
    db = dbmod.connect(settings.db_path)
    key = statsbatch.load_box_key(settings.keys_dir)
    path = statsbatch.export_batch(db, settings.outbox_dir, key, min_term_count=10)
    batch = path.read_text()
    table = json.dumps([list(r) for r in db.execute("SELECT * FROM stats_counts")])
    db.close()
    payload = statsbatch.verify_batch(path.read_bytes())
    assert any(s["term"] == "truyen kieu" and s["count"] == 12 for s in payload["searches"])
    ip = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
    for text in (batch, json.dumps(payload), table):
        assert not ip.search(text)
        for secret in ("PrivacyProbe", "Android", "cookie-value-8f3a", "10.42.0.57"):
            assert secret not in text
    assert "rare private words" not in batch and "rare private words" not in json.dumps(payload)
    # The rare term is not lost: it waits on the box until it is common enough.
    db = dbmod.connect(settings.db_path)
    assert counts(settings)[("search", 0, "rare private words")] == 3
    assert statsbatch.export_batch(db, settings.outbox_dir, key, min_term_count=10) is None
    db.close()


def test_batches_are_signed_counted_once_and_dropped_when_acknowledged(app, client, library, settings):
    client.get("/books/1")
    flush(app)
    db = dbmod.connect(settings.db_path)
    key = statsbatch.load_box_key(settings.keys_dir)
    first = statsbatch.export_batch(db, settings.outbox_dir, key)
    assert statsbatch.export_batch(db, settings.outbox_dir, key) is None  # nothing new
    client.get("/books/1")
    client.get("/books/1")
    flush(app)
    second = statsbatch.export_batch(db, settings.outbox_dir, key)
    one, two = statsbatch.verify_batch(first.read_bytes()), statsbatch.verify_batch(second.read_bytes())
    assert (one["batch"], two["batch"]) == (1, 2)
    assert [b["count"] for b in one["books"]] == [1] and [b["count"] for b in two["books"]] == [2]
    tampered = second.read_bytes().replace(b'\\"count\\":2', b'\\"count\\":9')
    assert tampered != second.read_bytes()
    with pytest.raises(statsbatch.BatchInvalid):
        statsbatch.verify_batch(tampered)
    assert len(statsbatch.pending_batches(settings.outbox_dir)) == 2
    assert statsbatch.acknowledge(settings.outbox_dir, key.public_b64, 1)
    assert statsbatch.pending_batches(settings.outbox_dir) == [second]
    db.close()


def test_crash_between_batch_file_and_marks_sends_nothing_twice(app, client, library, settings, monkeypatch):
    client.get("/books/2")
    flush(app)
    db = dbmod.connect(settings.db_path)
    key = statsbatch.load_box_key(settings.keys_dir)
    monkeypatch.setattr(statsbatch, "_apply_marks", lambda *a: (_ for _ in ()).throw(OSError("power cut")))
    with pytest.raises(OSError):
        statsbatch.export_batch(db, settings.outbox_dir, key)
    monkeypatch.undo()
    assert statsbatch.export_batch(db, settings.outbox_dir, key) is None  # the written batch already has it
    assert len(statsbatch.pending_batches(settings.outbox_dir)) == 1
    db.close()


def test_two_processes_exporting_at_once_send_each_count_once(app, client, library, settings, monkeypatch):
    """The agent's service exports while a van's visit does too (held here while it signs): the
    second waits for the first, then finds nothing new; every view is in one batch only."""
    for _ in range(3):
        client.get("/books/1")
    flush(app)
    key = statsbatch.load_box_key(settings.keys_dir)
    signing, carry_on = threading.Event(), threading.Event()
    sign = statsbatch.sign_payload

    def slow_sign(payload, key):
        if threading.current_thread().name == "first":
            signing.set()
            assert carry_on.wait(30)
        return sign(payload, key)

    monkeypatch.setattr(statsbatch, "sign_payload", slow_sign)
    made = []

    def export() -> None:
        db = dbmod.connect(settings.db_path)
        try:
            made.append(statsbatch.export_batch(db, settings.outbox_dir, key))
        finally:
            db.close()

    first = threading.Thread(target=export, name="first")
    first.start()
    assert signing.wait(30)
    second = threading.Thread(target=export, name="second")
    second.start()
    second.join(0.5)
    assert second.is_alive()  # waiting for the first
    carry_on.set()
    first.join(30)
    second.join(30)
    assert len(made) == 2 and made.count(None) == 1
    batches = [statsbatch.verify_batch(p.read_bytes()) for p in statsbatch.pending_batches(settings.outbox_dir)]
    assert sum(b["count"] for batch in batches for b in batch["books"] if b["kind"] == "view") == 3


def test_clock_from_1970_then_trusted_time_gives_the_right_days(settings):
    settings.home.mkdir(parents=True)
    db = dbmod.connect(settings.db_path)
    wall = [10 * 86400.0]  # the box woke up on 1970-01-11
    mono = [5000.0]
    clock = BoxClock(wall=lambda: wall[0], monotonic=lambda: mono[0], boot=lambda: "boot-a")
    events = [stats.Event("view", 1, "", -1, mono[0])]
    stats.write_events(db, events, clock)
    status = clock.status(db)
    assert not status.trusted
    assert db.execute("SELECT day, uncertain FROM stats_counts").fetchall() == [("", 1)]
    # Two hours later the hub's signed time arrives: it is really 2026-11-24 10:00 UTC.
    mono[0] += 7200
    wall[0] += 7200
    real_now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp()
    apply_trusted_time(db, real_now, "hub", clock)
    stats.write_events(db, [stats.Event("view", 1, "", -1, mono[0])], clock)
    rows = db.execute("SELECT day, hour, uncertain, sum(count) FROM stats_counts GROUP BY day, hour").fetchall()
    # The first view happened about two hours before 10:00, the second at 10:00; both on the 24th.
    assert rows == [("2026-11-24", 8, 0, 1), ("2026-11-24", 10, 0, 1)]
    key = statsbatch.load_box_key(settings.keys_dir)
    db.execute("INSERT INTO books(id, sha256, size, title, title_fold, added_seq, updated_seq) "
               "VALUES (1, ?, 1, 't', 't', 1, 1)", ["a" * 64])
    payload = statsbatch.verify_batch(statsbatch.export_batch(db, settings.outbox_dir, key).read_bytes())
    assert payload["days"] == ["2026-11-24"] and payload["clock_trusted"] is True
    # The clock never goes backwards, even if the system clock does.
    before = clock.now(db).now
    wall[0] -= 3600
    assert clock.now(db).now >= before
    db.close()


def test_admin_stats_page_and_setting_the_clock(admin_client, settings, library):
    page = admin_client.get("/admin/stats")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<svg" in html and "not set since the box started" in html
    answer = post_form(admin_client, "/admin/clock", {"phone_time": str(time.time())}, page="/admin/stats")
    assert answer.status_code == 303
    assert "The clock was set (from a librarian’s device)" in admin_client.get("/admin/stats").get_data(as_text=True)
    admin_client.set_cookie("lang", "vi")
    said = admin_client.get("/admin/stats").get_data(as_text=True)
    assert "Đồng hồ đã được đặt (từ thiết bị của thủ thư)." in said and "librarian phone" not in said
    admin_client.set_cookie("lang", "en")
    bad = post_form(admin_client, "/admin/clock", {"phone_time": "12"}, page="/admin/stats")
    assert bad.status_code == 303
    assert "was not set" in admin_client.get("/admin/stats").get_data(as_text=True)


def test_cli_export(runner, settings, library):
    result = runner.invoke(["stats", "export"])
    assert result.exit_code == 0 and "Nothing new" in result.output


def test_home_page_lists_the_most_read_and_drops_a_hidden_book_at_once(app, client, library):
    for _ in range(3):
        client.get("/books/2")
    client.get("/books/1")
    flush(app)
    home = client.get("/").get_data(as_text=True)
    ranks = home[home.index("Most read this month"):]
    assert ranks.index("Số đỏ") < ranks.index("Truyện Kiều")
    db = dbmod.connect(library.db_path)
    from appliance.storage import catalog

    catalog.update_book(db, 2, hidden=1)  # the librarian hides it
    db.close()
    home = client.get("/").get_data(as_text=True)  # the list is kept two minutes, but not past a change
    assert "Truyện Kiều" in home[home.index("Most read this month"):] and "Số đỏ" not in home

"""The catalog's schema: migrations applied once, whichever process opens the catalog first."""
from __future__ import annotations

import threading
import time

from appliance.storage import db as dbmod

LAST = "m006_channel_item_metadata"


def test_two_processes_opening_an_updated_box_apply_its_migration_once(settings):
    """After an update the server and the sync agent start together; both see the migration
    pending, one applies it while the other waits for the write lock, and the one that waited
    must find it done rather than add the column a second time and stop."""
    old = dbmod.connect(settings.db_path, migrate=False)
    old.enable_wal()
    dbmod.migrations.apply(old, stop_before=LAST)  # the catalog as the box's previous version left it
    old.close()

    first = dbmod.connect(settings.db_path, migrate=False)
    first.conn.execute("BEGIN IMMEDIATE")  # the first process, migrating
    assert LAST in {m.name for m in dbmod.migrations.pending(first)}
    dbmod.migrations.apply(first)
    outcome: dict = {}

    def second_process():
        try:
            outcome["db"] = dbmod.connect(settings.db_path)
        except Exception as e:  # noqa: BLE001 (the test reports it)
            outcome["error"] = e

    second = threading.Thread(target=second_process)
    second.start()
    time.sleep(0.5)  # the second has seen the migration pending and waits for the lock
    assert second.is_alive(), outcome
    first.conn.execute("COMMIT")
    second.join(timeout=30)
    first.close()

    assert "error" not in outcome, outcome.get("error")
    db = outcome["db"]
    try:
        assert [m.name for m in dbmod.migrations.applied(db)].count(LAST) == 1
        assert [c.name for c in db["quarantine"].columns].count("reason_message") == 1
    finally:
        db.close()


def test_opening_an_up_to_date_catalog_takes_no_write_lock(settings):
    """A process that opens the catalog while another writes (an import, the statistics) is not
    held up when it has nothing to migrate."""
    dbmod.connect(settings.db_path).close()
    writer = dbmod.connect(settings.db_path, migrate=False)
    writer.conn.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        dbmod.connect(settings.db_path).close()
        assert time.monotonic() - started < 5  # the busy timeout is 30 s
    finally:
        writer.conn.execute("ROLLBACK")
        writer.close()

"""The catalog database: connection, schema and its migrations.

This module is the only owner of the schema. Every change to it is a new
named migration function appended below; an applied migration is never edited.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils
from sqlite_utils import Migrations

logger = logging.getLogger(__name__)

migrations = Migrations("library")
# Migrations are named in the order they run. Catalogs made before they were keep their records
# under these names; ``_recognise_old_names`` renames them so that nothing runs twice.
OLD_MIGRATION_NAMES = {
    "m030_admin_accounts": "m002_admin_accounts",
    "m020_channels": "m003_channels",
    "m040_stats": "m004_stats",
    "m050_quarantine_message": "m005_quarantine_message",
}


class Catalog(sqlite_utils.Database):
    """sqlite-utils' Database whose outermost ``atomic()`` takes the write lock when it begins.

    Several processes write the catalog: the server's (statistics every second, edits), the sync
    agent, imports. In WAL mode a transaction that reads before it writes (a plain BEGIN) cannot
    write once another process has committed since its read: SQLite answers "database is locked"
    at once, busy timeout or not. BEGIN IMMEDIATE waits for the write lock first (up to the busy
    timeout), so what the transaction reads is still current when it writes.
    """

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Catalog]:
        if self.conn.in_transaction:  # nested: sqlite-utils' savepoint
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.rollback()
            raise


def connect(path: Path, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open the catalog in WAL mode with a generous busy timeout (two processes write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    db = Catalog(conn, execute_plugins=False)
    # WAL is kept in the file once set; asking costs more than a small query, so only the
    # connection that applies the migrations asks.
    if migrate and db.journal_mode != "wal":
        db.enable_wal()
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if migrate and migrations.pending(db):
        # Under the write lock, where what is pending is asked again: the server and the sync agent
        # start together after an update, and the one that waited finds the other did the work
        # (else it would add the same column or table a second time, and stop).
        with db.atomic():
            _recognise_old_names(db)
            migrations.apply(db)
    return db


def _recognise_old_names(db: sqlite_utils.Database) -> None:
    """Rename the records of migrations applied under their old names (OLD_MIGRATION_NAMES)."""
    table = Migrations.migrations_table
    if not db[table].exists():
        return
    for old, new in OLD_MIGRATION_NAMES.items():
        db.execute(f"UPDATE [{table}] SET name = ? WHERE migration_set = ? AND name = ?", [new, migrations.name, old])


@contextmanager
def catalog_session(path: Path, *, migrate: bool = True) -> Iterator[sqlite_utils.Database]:
    """``with catalog_session(settings.db_path) as db:`` the catalog, closed at the end of the block."""
    db = connect(path, migrate=migrate)
    try:
        yield db
    finally:
        db.close()


def next_seq(db: sqlite_utils.Database, name: str = "catalog") -> int:
    """Return the next value of a monotonic counter. Use inside the caller's transaction."""
    db.execute(
        "INSERT INTO counters(name, value) VALUES (?, 1) "
        "ON CONFLICT(name) DO UPDATE SET value = value + 1",
        [name],
    )
    return db.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()[0]


def current_seq(db: sqlite_utils.Database, name: str = "catalog") -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", [name]).fetchone()
    return row[0] if row else 0


def page_state(db: sqlite_utils.Database) -> tuple:
    """What the pages every reader opens depend on besides the request: the catalog's counter and
    the welcome text (for appliance.web.pagecache)."""
    return tuple(db.execute("SELECT (SELECT value FROM counters WHERE name = 'catalog'), "
                            "(SELECT value FROM kv WHERE key = 'welcome_text')").fetchone())


def get_setting(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    row = db.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def put_setting(db: sqlite_utils.Database, key: str, value: str) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )


def _run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run ``;``-separated statements one by one, so they stay inside the migration's transaction
    (``executescript`` would commit first)."""
    for statement in script.split(";"):
        lines = [ln for ln in statement.splitlines() if not ln.strip().startswith("--")]
        if "".join(lines).strip():
            db.execute("\n".join(lines))


def integrity_ok(db: sqlite_utils.Database) -> bool:
    return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@migrations()
def m001_catalog(db: sqlite_utils.Database) -> None:
    _run_script(
        db,
        """
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE books (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            file_name TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL,
            title_fold TEXT NOT NULL,
            language TEXT NOT NULL DEFAULT '',
            declared_language TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            publisher TEXT NOT NULL DEFAULT '',
            published TEXT NOT NULL DEFAULT '',
            identifier TEXT NOT NULL DEFAULT '',
            cover_sha256 TEXT,
            cover_type TEXT,
            thumb_sha256 TEXT,
            warnings TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT 'import',
            hidden INTEGER NOT NULL DEFAULT 0,
            added_seq INTEGER NOT NULL,
            updated_seq INTEGER NOT NULL
        );
        CREATE INDEX books_added ON books(added_seq);
        CREATE INDEX books_language ON books(language);
        CREATE INDEX books_title_fold ON books(title_fold);
        CREATE TABLE authors (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            name_fold TEXT NOT NULL
        );
        CREATE INDEX authors_fold ON authors(name_fold);
        CREATE TABLE book_authors (
            book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
            author_id INTEGER NOT NULL REFERENCES authors(id),
            position INTEGER NOT NULL,
            PRIMARY KEY (book_id, author_id)
        );
        CREATE INDEX book_authors_author ON book_authors(author_id);
        CREATE TABLE subjects (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE book_subjects (
            book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
            subject_id INTEGER NOT NULL REFERENCES subjects(id),
            PRIMARY KEY (book_id, subject_id)
        );
        CREATE INDEX book_subjects_subject ON book_subjects(subject_id);
        CREATE TABLE chapters (
            book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            href TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            html_bytes INTEGER NOT NULL DEFAULT 0,
            text_chars INTEGER NOT NULL DEFAULT 0,
            text_z BLOB,
            PRIMARY KEY (book_id, position)
        );
        CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            file_name TEXT NOT NULL,
            reason TEXT NOT NULL,
            seq INTEGER NOT NULL
        );
        -- Index work still to do: written in the same transaction as the catalog
        -- change, removed once the search index has it. Replaying it is harmless.
        CREATE TABLE index_queue (
            book_id INTEGER PRIMARY KEY,
            op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
            seq INTEGER NOT NULL
        );
        """
    )


@migrations()
def m002_admin_accounts(db: sqlite_utils.Database) -> None:
    """Librarian accounts and their server-side sessions.

    Only a password hash is stored (see appliance/storage/accounts.py for its format). A session row holds the
    SHA-256 of the random cookie value, never the value itself; ``last_seen`` is wall time and only
    advisory (the box's clock can jump), see auth.SESSION_IDLE_SECONDS.
    """
    _run_script(
        db,
        """
        CREATE TABLE admins (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            created_seq INTEGER NOT NULL,
            password_seq INTEGER NOT NULL
        );
        CREATE TABLE admin_sessions (
            token_sha256 TEXT PRIMARY KEY,
            admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
            created_seq INTEGER NOT NULL,
            last_seen REAL NOT NULL
        );
        CREATE INDEX admin_sessions_admin ON admin_sessions(admin_id)
        """
    )


@migrations()
def m003_channels(db: sqlite_utils.Database) -> None:
    """Channels this box subscribes to, the release installed of each, and which book each item is.

    ``version`` is NULL until a first release is installed. A book listed by two channels has two
    ``channel_items`` rows and one ``books`` row; it leaves the catalog when no channel lists it
    (unless a librarian imported it by hand).
    """
    _run_script(
        db,
        """
        CREATE TABLE channels (
            name TEXT PRIMARY KEY,
            subscribed INTEGER NOT NULL DEFAULT 1,
            version INTEGER,
            manifest_sha256 TEXT,
            installed_seq INTEGER
        );
        CREATE TABLE channel_items (
            channel TEXT NOT NULL REFERENCES channels(name) ON DELETE CASCADE,
            item_id TEXT NOT NULL,
            book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (channel, item_id)
        );
        CREATE INDEX channel_items_book ON channel_items(book_id)
        """
    )


@migrations()
def m004_stats(db: sqlite_utils.Database) -> None:
    """Usage counts (see appliance/stats/counts.py): nothing about readers, only counts.

    Dimensions use sentinels instead of NULL so that one row holds one count: ``day`` '' and
    ``uncertain`` 1 while the clock is untrusted (then ``boot_id`` and ``mono_hour``, the hour since
    boot, say when), ``hour`` -1 when unknown, ``book_id`` 0 for searches, ``term`` '' and ``found``
    -1 for everything but searches. ``exported`` is how much of ``count`` left in batches already.
    """
    _run_script(
        db,
        """
        CREATE TABLE stats_counts (
            id INTEGER PRIMARY KEY,
            day TEXT NOT NULL,
            uncertain INTEGER NOT NULL,
            boot_id TEXT NOT NULL,
            mono_hour INTEGER NOT NULL,
            hour INTEGER NOT NULL,
            kind TEXT NOT NULL,
            book_id INTEGER NOT NULL,
            term TEXT NOT NULL,
            found INTEGER NOT NULL,
            count INTEGER NOT NULL,
            exported INTEGER NOT NULL DEFAULT 0,
            seq INTEGER NOT NULL,
            UNIQUE (day, uncertain, boot_id, mono_hour, hour, kind, book_id, term, found)
        );
        CREATE INDEX stats_counts_seq ON stats_counts(seq);
        CREATE INDEX stats_counts_book ON stats_counts(book_id)
        """
    )


@migrations()
def m005_quarantine_message(db: sqlite_utils.Database) -> None:
    """Why a file was quarantined, as a message with its values (appliance/messages.py), so that a
    librarian's page says it in the page's language; ``reason`` keeps it in English."""
    _run_script(db, "ALTER TABLE quarantine ADD COLUMN reason_message TEXT")


@migrations()
def m006_channel_item_metadata(db: sqlite_utils.Database) -> None:
    """The hash of the metadata each release item was installed with, so that a newer release that
    changes only an item's metadata (its file the same) is installed as an update."""
    _run_script(db, "ALTER TABLE channel_items ADD COLUMN metadata_sha256 TEXT NOT NULL DEFAULT ''")

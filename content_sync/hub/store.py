"""The hub's records: boxes, their last status, statistics batches and daily aggregates.

Only this module speaks SQL for the hub. ``SqliteHubStore`` is the small-deployment backend (one
file beside the release tree); a PostgreSQL backend implements the same methods when a country
outgrows one machine. Each (box, batch counter) is stored once: uploading a batch again, directly
or through a van, changes nothing. Nothing here identifies a reader: boxes send counts only.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (
    box TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    registered_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    status TEXT NOT NULL DEFAULT '{}',
    counter INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS enrollments (
    token_sha256 TEXT PRIMARY KEY,
    label TEXT NOT NULL DEFAULT '',
    issued_at REAL NOT NULL,
    box TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    box TEXT NOT NULL REFERENCES boxes(box),
    batch INTEGER NOT NULL,
    received_at REAL NOT NULL,
    via TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,
    PRIMARY KEY (box, batch)
);
CREATE TABLE IF NOT EXISTS book_counts (
    box TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '', language TEXT NOT NULL DEFAULT '', count INTEGER NOT NULL,
    PRIMARY KEY (box, day, kind, sha256)
);
CREATE TABLE IF NOT EXISTS search_counts (
    box TEXT NOT NULL, day TEXT NOT NULL, term TEXT NOT NULL, found INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (box, day, term, found)
);
"""


class HubStore(Protocol):
    def register_box(self, box: str, name: str, status: dict, counter: int) -> bool: ...
    def issue_enrollment(self, label: str = "") -> str: ...
    def enroll(self, box: str, token: str) -> bool: ...
    def is_registered(self, box: str) -> bool: ...
    def add_batch(self, box: str, batch: int, payload: dict, via: str = "") -> bool: ...
    def boxes(self) -> list[dict]: ...
    def reads_per_day(self, days: int = 30) -> list[tuple[str, int]]: ...
    def top_books(self, limit: int = 20) -> list[dict]: ...
    def unfound_searches(self, limit: int = 30) -> list[dict]: ...


class SqliteHubStore:
    def __init__(self, path: Path, clock=time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            if "counter" not in {row[1] for row in conn.execute("PRAGMA table_info(boxes)")}:
                conn.execute("ALTER TABLE boxes ADD COLUMN counter INTEGER NOT NULL DEFAULT 0")  # a hub.db of before

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def register_box(self, box: str, name: str, status: dict, counter: int) -> bool:
        """Keep the box's name and status, unless a registration with a counter as high or higher is
        already kept (a replayed or late one, carried by a van): then nothing changes. True if kept."""
        now = self.clock()
        with self._conn() as conn:
            changed = conn.execute(
                "INSERT INTO boxes(box, name, registered_at, last_seen, status, counter) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(box) DO UPDATE SET name = excluded.name, last_seen = excluded.last_seen, "
                "status = excluded.status, counter = excluded.counter WHERE excluded.counter > boxes.counter",
                [box, name[:200], now, now, json.dumps(status), counter]).rowcount
        return changed > 0

    def issue_enrollment(self, label: str = "") -> str:
        """A new enrollment token for one box (only its hash is kept)."""
        token = secrets.token_urlsafe(18)
        with self._conn() as conn:
            conn.execute("INSERT INTO enrollments(token_sha256, label, issued_at) VALUES (?, ?, ?)",
                         [_token_hash(token), label[:200], self.clock()])
        return token

    def enroll(self, box: str, token: str) -> bool:
        """Bind ``token`` to ``box`` if it was issued and no other box used it; True if the box is enrolled."""
        if not token:
            return False
        with self._conn() as conn:
            return conn.execute("UPDATE enrollments SET box = ? WHERE token_sha256 = ? AND (box IS NULL OR box = ?)",
                                [box, _token_hash(token), box]).rowcount > 0

    def is_registered(self, box: str) -> bool:
        return self._conn().execute("SELECT 1 FROM boxes WHERE box = ?", [box]).fetchone() is not None

    def add_batch(self, box: str, batch: int, payload: dict, via: str = "") -> bool:
        """Store a verified batch; False when this (box, batch) was stored before."""
        with self._conn() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO batches(box, batch, received_at, via, payload) VALUES (?, ?, ?, ?, ?)",
                               [box, batch, self.clock(), via[:100], json.dumps(payload)])
            if cur.rowcount == 0:
                return False
            for b in payload.get("books", []):
                conn.execute(
                    "INSERT INTO book_counts(box, day, kind, sha256, title, language, count) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(box, day, kind, sha256) DO UPDATE SET count = count + excluded.count",
                    [box, str(b.get("day", "")), str(b.get("kind", "")), str(b.get("sha256", "")),
                     str(b.get("title", ""))[:300], str(b.get("language", ""))[:20], int(b.get("count", 0))])
            for s in payload.get("searches", []):
                conn.execute(
                    "INSERT INTO search_counts(box, day, term, found, count) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(box, day, term, found) DO UPDATE SET count = count + excluded.count",
                    [box, str(s.get("day", "")), str(s.get("term", ""))[:100], int(bool(s.get("found"))),
                     int(s.get("count", 0))])
            conn.execute("UPDATE boxes SET last_seen = ? WHERE box = ?", [self.clock(), box])
        return True

    def boxes(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT b.box, b.name, b.last_seen, b.status, (SELECT count(*) FROM batches t WHERE t.box = b.box) AS batches, "
            "(SELECT count(*) FROM batches t WHERE t.box = b.box AND t.via != '') AS carried "
            "FROM boxes b ORDER BY b.name, b.box").fetchall()
        return [dict(r, status=json.loads(r["status"] or "{}")) for r in rows]

    def reads_per_day(self, days: int = 30) -> list[tuple[str, int]]:
        rows = self._conn().execute(
            "SELECT day, sum(count) FROM book_counts WHERE kind IN ('view', 'read') AND day != '' "
            "GROUP BY day ORDER BY day DESC LIMIT ?", [days]).fetchall()
        return sorted((r[0], r[1]) for r in rows)

    def top_books(self, limit: int = 20) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT sha256, max(title) AS title, max(language) AS language, sum(count) AS count, "
            "count(DISTINCT box) AS boxes FROM book_counts GROUP BY sha256 ORDER BY count DESC LIMIT ?", [limit])]

    def unfound_searches(self, limit: int = 30) -> list[dict]:
        return [dict(r) for r in self._conn().execute(
            "SELECT term, sum(count) AS count, count(DISTINCT box) AS boxes FROM search_counts WHERE found = 0 "
            "GROUP BY term ORDER BY count DESC LIMIT ?", [limit])]

    def batch_count(self, box: str | None = None) -> int:
        if box:
            return self._conn().execute("SELECT count(*) FROM batches WHERE box = ?", [box]).fetchone()[0]
        return self._conn().execute("SELECT count(*) FROM batches").fetchone()[0]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()

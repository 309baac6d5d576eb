"""Usage statistics that say what is read and searched, and nothing about who reads.

``record_event`` is called from the request path; it only appends to an in-memory queue (bounded;
when full, events are dropped and counted) and returns. A writer thread folds the queue into counts
every ``FLUSH_SECONDS`` in one transaction, so a power cut loses at most the last seconds, never
the database. Nothing about the reader is stored: no address, user agent, cookie or account; only
counts per day per book and kind, per folded search term (and whether it found anything) and per
hour of the day.

Days come from the box clock (``appliance.stats.clock``). While the clock is not trusted, counts are kept
under the boot and the hour since boot instead (``day`` is empty, ``uncertain`` is 1); when a trusted
time arrives in the same boot, ``redate_uncertain`` moves them to their real day and hour. Every
row carries the ``stats`` counter value of its last change: order comes from counters, not clocks.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from appliance.stats.clock import DEFAULT_CLOCK, BoxClock
from appliance.storage import db as dbmod
from appliance.textfold import fold

logger = logging.getLogger(__name__)

KINDS = frozenset({"view", "read", "download_epub", "download_html", "download_opds", "search"})
FLUSH_SECONDS = 1.0
MAX_QUEUE = 100_000
MAX_TERM_CHARS = 100


@dataclass(frozen=True)
class Event:
    kind: str
    book_id: int
    term: str
    found: int
    monotonic: float


class Recorder:
    """The queue and its writer thread for one catalog."""

    def __init__(self, db_path: Path, clock: BoxClock = DEFAULT_CLOCK, flush_seconds: float = FLUSH_SECONDS):
        self.db_path = Path(db_path)
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.queue: deque[Event] = deque()
        self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, event: Event) -> None:
        if len(self.queue) >= MAX_QUEUE:
            self.dropped += 1
            return
        self.queue.append(event)  # deque.append is atomic: no lock on the request path
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stats-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:
                logger.exception("writing statistics failed; will try again")
        self.flush()

    def flush(self) -> int:
        """Write what is queued; returns how many events were written."""
        events = []
        while self.queue:
            events.append(self.queue.popleft())
        if not events:
            return 0
        db = dbmod.connect(self.db_path, migrate=False)
        try:
            write_events(db, events, self.clock)
        except Exception:
            self.queue.extendleft(reversed(events))  # keep them for the next try
            raise
        finally:
            db.close()
        return len(events)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        else:
            self.flush()


_recorder: Recorder | None = None


def init_stats(db_path: Path, clock: BoxClock = DEFAULT_CLOCK, flush_seconds: float = FLUSH_SECONDS) -> Recorder:
    """Point ``record_event`` at a catalog (the app factory and the tests call this)."""
    global _recorder
    if _recorder is not None and _recorder.db_path != Path(db_path):
        _recorder.close()
    if _recorder is None or _recorder.db_path != Path(db_path):
        _recorder = Recorder(db_path, clock, flush_seconds)
    return _recorder


def recorder() -> Recorder | None:
    return _recorder


def record_event(kind: str, book_id: int | None = None, term: str | None = None, found: bool | None = None) -> None:
    """Count one reader action. Never blocks and never raises: statistics must not hurt a request."""
    try:
        if _recorder is None or kind not in KINDS:
            return
        folded = " ".join(fold(term or "").split())[:MAX_TERM_CHARS] if kind == "search" else ""
        if kind == "search" and not folded:
            return
        _recorder.add(Event(kind, int(book_id or 0), folded, -1 if found is None else int(bool(found)),
                            time.monotonic()))
    except Exception:  # pragma: no cover - belt and braces
        logger.exception("could not record a statistics event")


# -- storage ------------------------------------------------------------------------------------


def _day_hour(moment: float) -> tuple[str, int]:
    when = datetime.fromtimestamp(moment, tz=UTC)
    return when.strftime("%Y-%m-%d"), when.hour


def write_events(db: sqlite_utils.Database, events: list[Event], clock: BoxClock = DEFAULT_CLOCK) -> None:
    """Fold ``events`` into the counts in one transaction."""
    with db.atomic():
        status = clock.now(db)
        boot = clock.boot()
        mono_now = clock.monotonic()
        counts: Counter[tuple] = Counter()
        for e in events:
            if status.trusted:
                day, hour = _day_hour(status.now - (mono_now - e.monotonic))
                key = (day, 0, "", -1, hour, e.kind, e.book_id, e.term, e.found)
            else:
                key = ("", 1, boot, int(e.monotonic // 3600), -1, e.kind, e.book_id, e.term, e.found)
            counts[key] += 1
        seq = dbmod.next_seq(db, "stats")
        for key, n in counts.items():
            _add(db, key, n, seq)


def _add(db, key: tuple, n: int, seq: int) -> None:
    db.execute(
        "INSERT INTO stats_counts(day, uncertain, boot_id, mono_hour, hour, kind, book_id, term, found, count, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(day, uncertain, boot_id, mono_hour, hour, kind, book_id, term, found) "
        "DO UPDATE SET count = count + excluded.count, seq = excluded.seq",
        [*key, n, seq])


def redate_uncertain(db: sqlite_utils.Database, clock: BoxClock = DEFAULT_CLOCK) -> int:
    """Give rows recorded earlier in this boot (while the clock was untrusted) their real day and hour."""
    boot = clock.boot()
    moved = 0
    with db.atomic():
        rows = list(db.query("SELECT * FROM stats_counts WHERE uncertain = 1 AND boot_id = ?", [boot]))
        if not rows:
            return 0
        seq = dbmod.next_seq(db, "stats")
        for row in rows:
            wall = clock.monotonic_to_wall(db, row["mono_hour"] * 3600 + 1800)
            if wall is None:
                return 0
            day, hour = _day_hour(wall)
            db.execute("DELETE FROM stats_counts WHERE id = ?", [row["id"]])
            _add(db, (day, 0, "", -1, hour, row["kind"], row["book_id"], row["term"], row["found"]), row["count"], seq)
            if row["exported"]:
                db.execute("UPDATE stats_counts SET exported = exported + ? WHERE day = ? AND uncertain = 0 AND "
                           "hour = ? AND kind = ? AND book_id = ? AND term = ? AND found = ?",
                           [row["exported"], day, hour, row["kind"], row["book_id"], row["term"], row["found"]])
            moved += 1
    return moved


# -- what librarians see ----------------------------------------------------------------------


def reads_per_day(db: sqlite_utils.Database, days: int = 30) -> list[tuple[str, int]]:
    rows = db.execute(
        "SELECT day, sum(count) FROM stats_counts WHERE uncertain = 0 AND kind IN ('view', 'read') "
        "GROUP BY day ORDER BY day DESC LIMIT ?", [days]).fetchall()
    return sorted(rows)


def most_read(db: sqlite_utils.Database, days: int = 30, limit: int = 10) -> list[dict]:
    """The books read most over the last ``days`` days of counts (views, reads and downloads)."""
    since = _days_back(db, days)
    return list(db.query(
        "SELECT b.id, b.title, b.language, sum(s.count) AS count FROM stats_counts s JOIN books b ON b.id = s.book_id "
        "WHERE s.kind != 'search' AND b.hidden = 0 AND (s.uncertain = 1 OR s.day >= ?) "
        "GROUP BY b.id ORDER BY count DESC, b.title LIMIT ?", [since, limit]))


def top_languages(db: sqlite_utils.Database, days: int = 30) -> list[dict]:
    since = _days_back(db, days)
    return list(db.query(
        "SELECT b.language, sum(s.count) AS count FROM stats_counts s JOIN books b ON b.id = s.book_id "
        "WHERE s.kind != 'search' AND (s.uncertain = 1 OR s.day >= ?) GROUP BY b.language ORDER BY count DESC",
        [since]))


def unfound_searches(db: sqlite_utils.Database, limit: int = 30) -> list[dict]:
    """Searches that found nothing: the box's wish list."""
    return list(db.query(
        "SELECT term, sum(count) AS count FROM stats_counts WHERE kind = 'search' AND found = 0 "
        "GROUP BY term ORDER BY count DESC, term LIMIT ?", [limit]))


def activity_by_hour(db: sqlite_utils.Database) -> list[int]:
    counts = [0] * 24
    for hour, n in db.execute("SELECT hour, sum(count) FROM stats_counts WHERE hour >= 0 GROUP BY hour"):
        counts[hour] = n
    return counts


def _days_back(db: sqlite_utils.Database, days: int) -> str:
    latest = db.execute("SELECT max(day) FROM stats_counts WHERE uncertain = 0").fetchone()[0]
    if not latest:
        return ""
    end = datetime.strptime(latest, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    return _day_hour(end - (days - 1) * 86400)[0]


def apply_trusted_time(db: sqlite_utils.Database, unix_seconds: float, source: str,
                       clock: BoxClock = DEFAULT_CLOCK) -> None:
    """Fix the box's clock from a trusted time (hub or librarian) and date what was recorded meanwhile."""
    clock.trust(db, unix_seconds, source)
    redate_uncertain(db, clock)

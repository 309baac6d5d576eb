"""Reading and writing the catalog: books, authors, subjects, chapters.

Writes happen in one short transaction each and queue the matching search
index work in the same transaction (see ``index_queue`` in db.py).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance import messages
from appliance.messages import Message
from appliance.storage.db import next_seq
from appliance.textfold import fold

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewBook:
    """What the catalog stores for a book; made from an importer record or a bundle item."""

    sha256: str
    size: int
    title: str
    authors: Sequence[str]
    language: str
    subjects: Sequence[str] = ()
    description: str = ""
    publisher: str = ""
    published: str = ""
    identifier: str = ""
    declared_language: str = ""
    file_name: str = ""
    cover_sha256: str | None = None
    cover_type: str | None = None
    thumb_sha256: str | None = None
    warnings: Sequence[Message | str] = ()
    source: str = "import"
    chapters: Sequence[tuple[str, str, int, str]] = ()  # (href, title, html_bytes, text)


def book_id_by_sha(db: sqlite_utils.Database, sha256: str) -> int | None:
    row = db.execute("SELECT id FROM books WHERE sha256 = ?", [sha256]).fetchone()
    return row[0] if row else None


def add_book(db: sqlite_utils.Database, book: NewBook) -> int:
    """Insert a book (or return the existing id for the same file). Runs in its own transaction
    unless the caller already holds one."""
    with db.atomic():
        existing = book_id_by_sha(db, book.sha256)
        if existing is not None:
            return existing
        seq = next_seq(db)
        cur = db.execute(
            """INSERT INTO books (sha256, size, file_name, title, title_fold, language, declared_language,
                   description, publisher, published, identifier, cover_sha256, cover_type, thumb_sha256,
                   warnings, source, added_seq, updated_seq)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            [
                book.sha256, book.size, book.file_name, book.title, fold(book.title), book.language,
                book.declared_language, book.description, book.publisher, book.published, book.identifier,
                book.cover_sha256, book.cover_type, book.thumb_sha256, _messages_json(book.warnings),
                book.source, seq, seq,
            ],
        )
        book_id = cur.lastrowid
        _set_people_and_subjects(db, book_id, book.authors, book.subjects)
        for position, (href, title, html_bytes, text) in enumerate(book.chapters):
            db.execute(
                "INSERT INTO chapters (book_id, position, href, title, html_bytes, text_chars, text_z) VALUES (?,?,?,?,?,?,?)",
                [book_id, position, href, title, html_bytes, len(text), zlib.compress(text.encode("utf-8"), 6)],
            )
        queue_index(db, book_id, "add", seq)
        return book_id


def _set_people_and_subjects(db, book_id: int, authors: Iterable[str], subjects: Iterable[str]) -> None:
    db.execute("DELETE FROM book_authors WHERE book_id = ?", [book_id])
    db.execute("DELETE FROM book_subjects WHERE book_id = ?", [book_id])
    seen: set[str] = set()
    for position, name in enumerate(a.strip() for a in authors):
        if not name or name in seen:
            continue
        seen.add(name)
        db.execute("INSERT OR IGNORE INTO authors (name, name_fold) VALUES (?, ?)", [name, fold(name)])
        author_id = db.execute("SELECT id FROM authors WHERE name = ?", [name]).fetchone()[0]
        db.execute("INSERT INTO book_authors (book_id, author_id, position) VALUES (?,?,?)", [book_id, author_id, position])
    for name in {s.strip() for s in subjects if s.strip()}:
        db.execute("INSERT OR IGNORE INTO subjects (name) VALUES (?)", [name])
        subject_id = db.execute("SELECT id FROM subjects WHERE name = ?", [name]).fetchone()[0]
        db.execute("INSERT INTO book_subjects (book_id, subject_id) VALUES (?,?)", [book_id, subject_id])


def queue_index(db: sqlite_utils.Database, book_id: int, op: str, seq: int | None = None) -> None:
    seq = seq if seq is not None else next_seq(db)
    db.execute(
        "INSERT INTO index_queue (book_id, op, seq) VALUES (?,?,?) "
        "ON CONFLICT(book_id) DO UPDATE SET op = excluded.op, seq = excluded.seq",
        [book_id, op, seq],
    )


EDITABLE = ("title", "language", "description", "publisher", "published")


def update_book(db: sqlite_utils.Database, book_id: int, *, authors: Sequence[str] | None = None,
                subjects: Sequence[str] | None = None, **fields: Any) -> None:
    """Change a book's metadata; unknown field names raise ValueError."""
    unknown = set(fields) - set(EDITABLE) - {"hidden", "cover_sha256", "cover_type", "thumb_sha256"}
    if unknown:
        raise ValueError(f"cannot edit {', '.join(sorted(unknown))}")
    with db.atomic():
        if get_book_row(db, book_id) is None:
            raise LookupError(book_id)
        seq = next_seq(db)
        if "title" in fields:
            fields["title_fold"] = fold(fields["title"])
        fields["updated_seq"] = seq
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE books SET {sets} WHERE id = ?", [*fields.values(), book_id])
        if authors is not None or subjects is not None:
            current = get_book(db, book_id)
            _set_people_and_subjects(
                db, book_id,
                authors if authors is not None else current["authors"],
                subjects if subjects is not None else current["subjects"],
            )
        queue_index(db, book_id, "add", seq)


def remove_book(db: sqlite_utils.Database, book_id: int) -> str | None:
    """Delete a book from the catalog; returns its file hash (blobs are collected separately)."""
    with db.atomic():
        row = get_book_row(db, book_id)
        if row is None:
            return None
        db.execute("DELETE FROM books WHERE id = ?", [book_id])
        queue_index(db, book_id, "remove")
        return row["sha256"]


def get_book_row(db: sqlite_utils.Database, book_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM books WHERE id = ?", [book_id]))
    return rows[0] if rows else None


# One statement for a whole book: every row a statement returns is a step during which Python's
# sqlite3 lets go of the interpreter lock, and with a dozen server threads each step waits its turn
# to take it back; a book of 50 chapters read row by row made the book and chapter pages four times
# slower under load than alone. The lists come back as JSON arrays carrying their sort keys.
_BOOK_SQL = """
SELECT b.*,
  (SELECT json_group_array(json_array(ba.position, a.id, a.name))
     FROM book_authors ba JOIN authors a ON a.id = ba.author_id WHERE ba.book_id = b.id) AS _authors,
  (SELECT json_group_array(json_array(s.name, s.id))
     FROM book_subjects bs JOIN subjects s ON s.id = bs.subject_id WHERE bs.book_id = b.id) AS _subjects,
  (SELECT json_group_array(json_array(c.position, c.href, c.title, c.html_bytes, c.text_chars))
     FROM chapters c WHERE c.book_id = b.id) AS _chapters
FROM books b WHERE b.id = ?"""
_CHAPTER_KEYS = ("position", "href", "title", "html_bytes", "text_chars")


def get_book(db: sqlite_utils.Database, book_id: int, *, include_hidden: bool = False) -> dict | None:
    """A book with its authors, subjects and chapter list (without text), or None."""
    cursor = db.execute(_BOOK_SQL, [book_id])
    row = cursor.fetchone()
    if row is None:
        return None
    book = dict(zip([d[0] for d in cursor.description], row, strict=True))
    if book["hidden"] and not include_hidden:
        return None
    authors = sorted(json.loads(book.pop("_authors")))
    book["authors"] = [name for _, _, name in authors]
    book["author_ids"] = [author_id for _, author_id, _ in authors]
    subjects = sorted(json.loads(book.pop("_subjects")))
    book["subjects"] = [name for name, _ in subjects]
    book["subject_ids"] = [subject_id for _, subject_id in subjects]
    book["chapters"] = [dict(zip(_CHAPTER_KEYS, c, strict=True)) for c in sorted(json.loads(book.pop("_chapters")))]
    book["warnings"] = [messages.load(w) for w in json.loads(book["warnings"] or "[]")]
    return book


def _messages_json(said: Sequence[Message | str]) -> str:
    return json.dumps([m.as_json() if isinstance(m, Message) else m for m in said], ensure_ascii=False)


def chapter_text(db: sqlite_utils.Database, book_id: int, position: int) -> str | None:
    row = db.execute("SELECT text_z FROM chapters WHERE book_id = ? AND position = ?", [book_id, position]).fetchone()
    if row is None or row[0] is None:
        return None
    return zlib.decompress(row[0]).decode("utf-8")


_SUMMARY_KEYS = ("id", "title", "language", "size", "thumb_sha256", "cover_sha256", "added_seq", "updated_seq",
                 "description")


def books_summary(db: sqlite_utils.Database, ids: Sequence[int]) -> dict[int, dict]:
    """Title, authors, language and cover of many books at once (for result lists).

    One row for the whole list, as in get_book: a row per book and per author made a page of
    results wait for the interpreter lock forty times under load."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    columns = ", ".join(f"b.{key}" for key in _SUMMARY_KEYS)
    row = db.execute(
        f"SELECT json_group_array(json_array({columns}, json((SELECT json_group_array(json_array(ba.position, a.name)) "
        f"FROM book_authors ba JOIN authors a ON a.id = ba.author_id WHERE ba.book_id = b.id)))) "
        f"FROM books b WHERE b.hidden = 0 AND b.id IN ({marks})", list(ids)).fetchone()
    out = {}
    for values in json.loads(row[0]):
        book = dict(zip(_SUMMARY_KEYS, values[:-1], strict=True))
        book["authors"] = [name for _, name in sorted(values[-1])]
        out[book["id"]] = book
    return out


def books_details(db: sqlite_utils.Database, ids: Sequence[int]) -> list[dict]:
    """Visible books in the order of ``ids`` with everything a feed entry shows (no chapters)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = {r["id"]: dict(r, authors=[], subjects=[]) for r in db.query(
        f"SELECT id, sha256, size, title, language, description, publisher, published, identifier, cover_sha256, "
        f"cover_type, thumb_sha256, added_seq, updated_seq FROM books WHERE hidden = 0 AND id IN ({marks})",
        list(ids))}
    for r in db.query(
            f"SELECT ba.book_id, a.id, a.name FROM book_authors ba JOIN authors a ON a.id = ba.author_id "
            f"WHERE ba.book_id IN ({marks}) ORDER BY ba.book_id, ba.position", list(ids)):
        if r["book_id"] in rows:
            rows[r["book_id"]]["authors"].append({"id": r["id"], "name": r["name"]})
    for r in db.query(
            f"SELECT bs.book_id, s.id, s.name FROM book_subjects bs JOIN subjects s ON s.id = bs.subject_id "
            f"WHERE bs.book_id IN ({marks}) ORDER BY s.name", list(ids)):
        if r["book_id"] in rows:
            rows[r["book_id"]]["subjects"].append({"id": r["id"], "name": r["name"]})
    return [rows[i] for i in ids if i in rows]


def count_authors(db: sqlite_utils.Database) -> int:
    return db.execute(
        "SELECT count(DISTINCT ba.author_id) FROM book_authors ba JOIN books b ON b.id = ba.book_id AND b.hidden = 0"
    ).fetchone()[0]


ORDERS = {
    "new": "b.added_seq DESC",
    "title": "b.title_fold ASC, b.id ASC",
}


def list_books(db: sqlite_utils.Database, *, order: str = "new", language: str | None = None,
               subject_id: int | None = None, author_id: int | None = None,
               offset: int = 0, limit: int = 20) -> tuple[list[dict], int]:
    """A page of visible books and the total count."""
    where = ["b.hidden = 0"]
    params: list[Any] = []
    if language:
        where.append("b.language = ?")
        params.append(language)
    if subject_id is not None:
        where.append("b.id IN (SELECT book_id FROM book_subjects WHERE subject_id = ?)")
        params.append(subject_id)
    if author_id is not None:
        where.append("b.id IN (SELECT book_id FROM book_authors WHERE author_id = ?)")
        params.append(author_id)
    clause = " AND ".join(where)
    total = db.execute(f"SELECT count(*) FROM books b WHERE {clause}", params).fetchone()[0]
    ids = [r[0] for r in db.execute(
        f"SELECT b.id FROM books b WHERE {clause} ORDER BY {ORDERS.get(order, ORDERS['new'])} LIMIT ? OFFSET ?",
        [*params, limit, offset])]
    summary = books_summary(db, ids)
    return [summary[i] for i in ids if i in summary], total


def languages(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query(
        "SELECT language, count(*) AS books FROM books WHERE hidden = 0 GROUP BY language ORDER BY books DESC, language"))


def subjects(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query(
        "SELECT s.id, s.name, count(*) AS books FROM subjects s JOIN book_subjects bs ON bs.subject_id = s.id "
        "JOIN books b ON b.id = bs.book_id AND b.hidden = 0 GROUP BY s.id ORDER BY books DESC, s.name"))


def authors(db: sqlite_utils.Database, *, offset: int = 0, limit: int = 200) -> list[dict]:
    return list(db.query(
        "SELECT a.id, a.name, count(*) AS books FROM authors a JOIN book_authors ba ON ba.author_id = a.id "
        "JOIN books b ON b.id = ba.book_id AND b.hidden = 0 GROUP BY a.id ORDER BY a.name_fold LIMIT ? OFFSET ?",
        [limit, offset]))


def get_author(db: sqlite_utils.Database, author_id: int) -> dict | None:
    rows = list(db.query("SELECT id, name FROM authors WHERE id = ?", [author_id]))
    return rows[0] if rows else None


def get_subject(db: sqlite_utils.Database, subject_id: int) -> dict | None:
    rows = list(db.query("SELECT id, name FROM subjects WHERE id = ?", [subject_id]))
    return rows[0] if rows else None


def count_books(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM books WHERE hidden = 0").fetchone()[0]


def fallback_search(db: sqlite_utils.Database, q: str, *, language: str | None = None,
                    offset: int = 0, limit: int = 20) -> tuple[list[int], int]:
    """Title and author search straight from SQLite, for when the full-text index is being rebuilt.

    Every folded query word must occur in the folded title or in a folded author name.
    """
    words = [w for w in fold(q).split() if w][:8]
    if not words:
        return [], 0
    where = ["b.hidden = 0"]
    params: list[Any] = []
    for w in words:
        like = "%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            "(b.title_fold LIKE ? ESCAPE '\\' OR b.id IN (SELECT ba.book_id FROM book_authors ba "
            "JOIN authors a ON a.id = ba.author_id WHERE a.name_fold LIKE ? ESCAPE '\\'))")
        params += [like, like]
    if language:
        where.append("b.language = ?")
        params.append(language)
    clause = " AND ".join(where)
    total = db.execute(f"SELECT count(*) FROM books b WHERE {clause}", params).fetchone()[0]
    ids = [r[0] for r in db.execute(
        f"SELECT b.id FROM books b WHERE {clause} ORDER BY b.title_fold LIMIT ? OFFSET ?", [*params, limit, offset])]
    return ids, total


def add_quarantine(db: sqlite_utils.Database, sha256: str, file_name: str, reason: Message) -> None:
    with db.atomic():
        db.execute(
            "INSERT INTO quarantine (sha256, file_name, reason, reason_message, seq) VALUES (?,?,?,?,?) "
            "ON CONFLICT(sha256) DO UPDATE SET file_name = excluded.file_name, reason = excluded.reason, "
            "reason_message = excluded.reason_message",
            [sha256, file_name, str(reason), json.dumps(reason.as_json(), ensure_ascii=False), next_seq(db)],
        )


def remove_quarantine(db: sqlite_utils.Database, sha256: str) -> str | None:
    """Forget a quarantined file; its name, or None when it was not quarantined."""
    with db.atomic():
        row = db.execute("SELECT file_name FROM quarantine WHERE sha256 = ?", [sha256]).fetchone()
        if row is not None:
            db.execute("DELETE FROM quarantine WHERE sha256 = ?", [sha256])
    return row[0] if row else None


def quarantined(db: sqlite_utils.Database, limit: int = -1) -> list[dict]:
    """The quarantined files, latest first (at most ``limit``); ``reason`` a Message."""
    return [_quarantine_row(row) for row in db.query("SELECT * FROM quarantine ORDER BY seq DESC LIMIT ?", [limit])]


def quarantine_entry(db: sqlite_utils.Database, entry_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM quarantine WHERE id = ?", [entry_id]))
    return _quarantine_row(rows[0]) if rows else None


def count_quarantined(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM quarantine").fetchone()[0]


def _quarantine_row(row: dict) -> dict:
    row["reason"] = _kept_message(row.pop("reason_message"), row["reason"])
    return row


def _kept_message(kept: str | None, english: str) -> Message:
    try:
        return messages.load(json.loads(kept)) if kept else Message(english)
    except ValueError:
        return Message(english)


def referenced_blobs(db: sqlite_utils.Database) -> set[str]:
    """Every blob hash the catalog points at (book files, covers, thumbnails)."""
    out: set[str] = set()
    for row in db.execute("SELECT sha256, cover_sha256, thumb_sha256 FROM books"):
        out.update(h for h in row if h)
    return out


def chapter_loader(connection: Callable[[], sqlite3.Connection]):
    """A function giving a book's chapters as (position, title, text, complete), in order (those
    at the given positions, or all), read one at a time from the catalog over ``connection()``,
    for the search index's snippets. With ``head`` (bytes), only about the first ``head`` bytes
    of each text are decompressed (some chapters are whole books of a megabyte), and
    ``complete`` says whether that was all of it."""

    def chapters(book_id: int, positions: list[int] | None = None, head: int | None = None):
        sql = "SELECT position, title, text_z FROM chapters WHERE book_id = ?"
        args: list = [book_id]
        if positions is not None:
            positions = [int(p) for p in positions][:500]
            sql += f" AND position IN ({','.join('?' * len(positions))})"
            args += positions
        cursor = connection().execute(sql + " ORDER BY position", args)
        try:
            for position, title, text_z in cursor:
                if not text_z:
                    yield position, title or "", "", True
                elif head is None:
                    yield position, title or "", zlib.decompress(text_z).decode("utf-8"), True
                else:
                    stream = zlib.decompressobj()
                    data = stream.decompress(text_z, head)
                    if not stream.eof:
                        data = data[:_utf8_cut(data)]
                    yield position, title or "", data.decode("utf-8"), stream.eof
        finally:
            cursor.close()

    return chapters


def _utf8_cut(data: bytes) -> int:
    """Where ``data`` can be cut so that it ends with no part of a character of several bytes
    (the last character is left out when it has several bytes, whole or not)."""
    cut = len(data)
    while cut > 0 and data[cut - 1] & 0xC0 == 0x80:
        cut -= 1
    if cut > 0 and data[cut - 1] >= 0xC0:
        cut -= 1
    return cut

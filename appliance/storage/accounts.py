"""Librarian accounts: password hashes, the first-start setup code and server-side sessions.

No Flask in here; the web side (cookies, CSRF, login pages) is in appliance/web/views/admin*.py.

Passwords are hashed with scrypt (``hashlib.scrypt``, RFC 7914) and a random 16-byte salt per
password. The stored form names its parameters, ``scrypt$<n>$<r>$<p>$<salt>$<key>`` (base64), so
they can be raised later: a login with older parameters re-hashes the password. The parameters are
n=2**15, r=8, p=1: about 32 MiB of memory and a fraction of a second on a Raspberry Pi, and at most
``HASH_SLOTS`` hashes run at once so a burst of logins cannot exhaust a 1 GB box.

A box starts with no account and no default password. ``prepare_setup_code`` (run by
``library serve`` while no account exists) makes a one-time setup code, keeps only its hash in the
catalog and returns the code to be printed on the console; the first librarian types it on
/admin/setup. Once an account exists the code is forgotten. On the box image the first-boot step
writes the code to ``keys/admin-setup-code`` so the console's login prompt can show it; that code
is the one used, and the file is removed with the hash once the first account exists.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass

import sqlite_utils

from appliance.messages import N_, SaidError
from appliance.settings import Settings
from appliance.storage.db import get_setting, next_seq
from appliance.storage.keys import new_setup_code, setup_code_path

logger = logging.getLogger(__name__)

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
HASH_SLOTS = threading.BoundedSemaphore(2)

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 256
MAX_USERNAME_CHARS = 40
USERNAME_PUNCTUATION = "._-"

SETUP_CODE_KEY = "admin_setup_code_hash"

SESSION_IDLE_SECONDS = 12 * 3600
# The wall clock is advisory on a box without a real-time clock: a session whose last use seems to
# lie more than this far in the future (the clock went back) is ended rather than kept forever.
SESSION_CLOCK_SLACK_SECONDS = 300
SESSION_TOUCH_SECONDS = 60


class AccountError(SaidError, ValueError):
    """An account change that cannot be made; the message is for the librarian (the command line
    shows it in English, the librarian's pages in their language)."""


class LastAdmin(AccountError):
    """Removing this account would leave the box without any librarian."""


class SetupClosed(AccountError):
    """The first account exists already; the setup code is no longer accepted."""


class SetupCodeWrong(AccountError):
    """The setup code typed on the setup page is not the box's code."""


@dataclass(frozen=True)
class Admin:
    id: int
    username: str


# --- password hashing -------------------------------------------------------------------------


SESSION_COOKIE = "library_admin"  # the cookie holding a librarian's session token


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    text = unicodedata.normalize("NFC", secret).encode("utf-8")
    with HASH_SLOTS:
        return hashlib.scrypt(text, salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                              maxmem=128 * r * (n + p + 2) + 2**20)


def hash_password(password: str) -> str:
    """The stored form of ``password``: scrypt with a fresh random salt, parameters included."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if not (2**10 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16 and key):
        return None
    return n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches the stored hash (compared in constant time)."""
    parsed = _parse_hash(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), key)


def needs_rehash(stored: str) -> bool:
    parsed = _parse_hash(stored)
    return parsed is None or parsed[:3] != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


_DUMMY: dict[str, str] = {}


def _waste_a_hash(password: str) -> None:
    """Spend as long as a real check, so the answer for an unknown name takes as long as a wrong password."""
    if "hash" not in _DUMMY:
        _DUMMY["hash"] = hash_password(secrets.token_hex(16))
    verify_password(password, _DUMMY["hash"])


# --- accounts ---------------------------------------------------------------------------------


def clean_username(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw or "").strip()
    if not name:
        raise AccountError(N_("Give the account a name."))
    if len(name) > MAX_USERNAME_CHARS:
        raise AccountError(N_("An account name can have at most %(n)d characters."), n=MAX_USERNAME_CHARS)
    if not all(c.isalnum() or c in USERNAME_PUNCTUATION for c in name):
        raise AccountError(N_("An account name may only use letters, digits, dots, dashes and underscores."))
    return name


def check_new_password(password: str, again: str | None = None) -> None:
    if again is not None and password != again:
        raise AccountError(N_("The two passwords are not the same."))
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(N_("A password needs at least %(n)d characters."), n=MIN_PASSWORD_CHARS)
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(N_("A password can have at most %(n)d characters."), n=MAX_PASSWORD_CHARS)


def admin_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM admins").fetchone()[0]


def list_admins(db: sqlite_utils.Database) -> list[dict]:
    """Every account (oldest first) with how many sessions it has open."""
    return list(db.query(
        "SELECT a.id, a.username, a.created_seq, (SELECT count(*) FROM admin_sessions s WHERE s.admin_id = a.id)"
        " AS sessions FROM admins a ORDER BY a.created_seq"))


def find_admin(db: sqlite_utils.Database, username: str) -> Admin | None:
    row = db.execute("SELECT id, username FROM admins WHERE username = ?",
                     [unicodedata.normalize("NFC", username.strip())]).fetchone()
    return Admin(row[0], row[1]) if row else None


def get_admin(db: sqlite_utils.Database, admin_id: int) -> Admin | None:
    row = db.execute("SELECT id, username FROM admins WHERE id = ?", [admin_id]).fetchone()
    return Admin(row[0], row[1]) if row else None


def create_admin(db: sqlite_utils.Database, username: str, password: str, *, first_only: bool = False) -> Admin:
    """Add an account. With ``first_only`` it is refused (SetupClosed) when any account exists."""
    name = clean_username(username)
    check_new_password(password)
    stored = hash_password(password)
    with db.atomic():
        if first_only and admin_count(db):
            raise SetupClosed(N_("A librarian account exists already; log in with it."))
        if find_admin(db, name) is not None:
            raise AccountError(N_("There is already an account called %(name)s."), name=name)
        seq = next_seq(db, "admin")
        cur = db.execute(
            "INSERT INTO admins (username, password_hash, created_seq, password_seq) VALUES (?,?,?,?)",
            [name, stored, seq, seq])
        db.execute("DELETE FROM kv WHERE key = ?", [SETUP_CODE_KEY])
    logger.info("librarian account %s created", name)
    return Admin(cur.lastrowid, name)


def set_password(db: sqlite_utils.Database, admin_id: int, password: str, *, keep_session: str | None = None) -> None:
    """Change a password and end the account's other sessions (all of them unless ``keep_session``)."""
    check_new_password(password)
    stored = hash_password(password)
    with db.atomic():
        if get_admin(db, admin_id) is None:
            raise AccountError(N_("That account does not exist any more."))
        db.execute("UPDATE admins SET password_hash = ?, password_seq = ? WHERE id = ?",
                   [stored, next_seq(db, "admin"), admin_id])
        end_sessions(db, admin_id, keep_token=keep_session)


def delete_admin(db: sqlite_utils.Database, admin_id: int) -> None:
    """Remove an account and its sessions; the last account is never removed (LastAdmin)."""
    with db.atomic():
        if get_admin(db, admin_id) is None:
            raise AccountError(N_("That account does not exist any more."))
        if admin_count(db) <= 1:
            raise LastAdmin(N_("This is the last librarian account; add another one before removing it."))
        db.execute("DELETE FROM admins WHERE id = ?", [admin_id])


def authenticate(db: sqlite_utils.Database, username: str, password: str) -> Admin | None:
    """The account when the name and password match, else None (same time either way)."""
    if len(password) > MAX_PASSWORD_CHARS or len(username) > MAX_USERNAME_CHARS * 4:
        return None
    row = db.execute("SELECT id, username, password_hash FROM admins WHERE username = ?",
                     [unicodedata.normalize("NFC", username.strip())]).fetchone()
    if row is None:
        _waste_a_hash(password)
        return None
    if not verify_password(password, row[2]):
        return None
    if needs_rehash(row[2]):
        with db.atomic():
            db.execute("UPDATE admins SET password_hash = ? WHERE id = ?", [hash_password(password), row[0]])
    return Admin(row[0], row[1])


# --- the first-start setup code ---------------------------------------------------------------


def normalize_setup_code(code: str) -> str:
    """Codes are typed on phones: case, spaces and dashes do not matter."""
    return "".join(c for c in (code or "").upper() if c.isalnum())


def _setup_code_file(settings: Settings):
    return setup_code_path(settings.keys_dir)


def prepare_setup_code(settings: Settings, db: sqlite_utils.Database) -> str | None:
    """While no account exists: the setup code to show on the console (its hash is stored).

    Uses the code the first-boot step wrote, if any, else makes a new one (the previous one stops
    working). Returns None, and forgets any code, once an account exists.
    """
    if admin_count(db):
        forget_setup_code(settings, db)
        return None
    code = None
    try:
        code = _setup_code_file(settings).read_text().strip() or None
    except FileNotFoundError:
        pass
    code = code or new_setup_code()
    stored = hash_password(normalize_setup_code(code))
    with db.atomic():
        db.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   [SETUP_CODE_KEY, stored])
    return code


def setup_code_active(db: sqlite_utils.Database) -> bool:
    return get_setting(db, SETUP_CODE_KEY) is not None and admin_count(db) == 0


def check_setup_code(db: sqlite_utils.Database, code: str) -> bool:
    stored = get_setting(db, SETUP_CODE_KEY)
    if not stored or not code or len(code) > 64:
        return False
    return verify_password(normalize_setup_code(code), stored)


def forget_setup_code(settings: Settings, db: sqlite_utils.Database) -> None:
    with db.atomic():
        db.execute("DELETE FROM kv WHERE key = ?", [SETUP_CODE_KEY])
    try:
        _setup_code_file(settings).unlink()
        logger.info("the admin setup code has been used and is removed")
    except FileNotFoundError:
        pass


def create_first_admin(settings: Settings, db: sqlite_utils.Database, code: str, username: str,
                       password: str) -> Admin:
    """The setup page's work: check the code, make the first account, forget the code."""
    if admin_count(db):
        raise SetupClosed(N_("A librarian account exists already; log in with it."))
    if not check_setup_code(db, code):
        raise SetupCodeWrong(N_("That setup code is not right. It is printed in the log when the library starts."))
    admin = create_admin(db, username, password, first_only=True)
    forget_setup_code(settings, db)
    return admin


# --- sessions ---------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(db: sqlite_utils.Database, admin_id: int, now: float | None = None) -> str:
    """A new random session token for ``admin_id``; only its hash is stored."""
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    with db.atomic():
        _drop_stale_sessions(db, now)
        db.execute("INSERT INTO admin_sessions (token_sha256, admin_id, created_seq, last_seen) VALUES (?,?,?,?)",
                   [_token_hash(token), admin_id, next_seq(db, "admin"), now])
    return token


def _drop_stale_sessions(db: sqlite_utils.Database, now: float) -> None:
    db.execute("DELETE FROM admin_sessions WHERE last_seen < ? OR last_seen > ?",
               [now - SESSION_IDLE_SECONDS, now + SESSION_CLOCK_SLACK_SECONDS])


def session_admin(db: sqlite_utils.Database, token: str | None, now: float | None = None) -> Admin | None:
    """The account a session token belongs to, or None if it is unknown, ended or idle too long."""
    if not token or len(token) > 100:
        return None
    now = time.time() if now is None else now
    key = _token_hash(token)
    row = db.execute(
        "SELECT a.id, a.username, s.last_seen FROM admin_sessions s JOIN admins a ON a.id = s.admin_id"
        " WHERE s.token_sha256 = ?", [key]).fetchone()
    if row is None:
        return None
    idle = now - row[2]
    if idle > SESSION_IDLE_SECONDS or idle < -SESSION_CLOCK_SLACK_SECONDS:
        end_session(db, token)
        return None
    if idle > SESSION_TOUCH_SECONDS:
        with db.atomic():
            db.execute("UPDATE admin_sessions SET last_seen = ? WHERE token_sha256 = ?", [now, key])
    return Admin(row[0], row[1])


def end_session(db: sqlite_utils.Database, token: str) -> None:
    with db.atomic():
        db.execute("DELETE FROM admin_sessions WHERE token_sha256 = ?", [_token_hash(token)])


def end_sessions(db: sqlite_utils.Database, admin_id: int, keep_token: str | None = None) -> None:
    keep = _token_hash(keep_token) if keep_token else ""
    with db.atomic():
        db.execute("DELETE FROM admin_sessions WHERE admin_id = ? AND token_sha256 != ?", [admin_id, keep])

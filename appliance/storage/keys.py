"""Every key and secret the box keeps in its data folder, made in one place.

- this box's Ed25519 key pair (``box-ed25519.key`` / ``.pub``): signs its registrations and
  statistics batches; made at first boot (appliance.system.firstboot) or first use;
- the web secret (``web-secret``) that signs the box's cookies;
- the admin setup code (``admin-setup-code``), shown on the console until the first librarian exists.

The hub's key pair is made by ``ed25519_key_pair`` too; publisher keys, in minisign's format, by
``library keygen`` (content_sync.protocol.minisign).
"""
from __future__ import annotations

import base64
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.storage.atomic import atomic_write_bytes, atomic_write_text

BOX_KEY = "box-ed25519.key"
BOX_PUBLIC_KEY = "box-ed25519.pub"
ADMIN_SETUP_CODE = "admin-setup-code"
WEB_SECRET = "web-secret"
HUB_PUBLIC_KEY = "hub.pub"  # the hub's public key a box trusts (its signed time, its acknowledgements)
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud or off a screen


def public_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key of ``key``, in base64 (how boxes and the hub name keys)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def ed25519_key_pair(private_path: Path, public_path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The Ed25519 key at ``private_path`` (PEM, owner-only), made once; its public half (base64) is
    kept beside it at ``public_path``. Returns (key, made now)."""
    made = False
    try:
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        atomic_write_bytes(private_path, pem, mode=0o600)
        made = True
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{private_path} is not an Ed25519 key")
    public = public_b64(key)
    if not public_path.exists() or public_path.read_text().strip() != public:
        atomic_write_text(public_path, public + "\n", mode=0o644)
    return key, made


def box_key(keys_dir: Path) -> Ed25519PrivateKey:
    """This box's private key, made if missing."""
    return ed25519_key_pair(keys_dir / BOX_KEY, keys_dir / BOX_PUBLIC_KEY)[0]


def ensure_box_key(keys_dir: Path) -> tuple[str, bool]:
    """This box's Ed25519 key pair in ``keys_dir``, made once. Returns (public key base64, made now)."""
    key, made = ed25519_key_pair(keys_dir / BOX_KEY, keys_dir / BOX_PUBLIC_KEY)
    return public_b64(key), made


def valid_public_key(text: str) -> bool:
    """Whether ``text`` is an Ed25519 public key as the box keeps them: 32 bytes in base64."""
    try:
        return len(base64.b64decode(text.strip(), validate=True)) == 32
    except (ValueError, TypeError):
        return False


def web_secret(keys_dir: Path) -> str:
    """A per-box secret for signing cookies, made once and kept in the data folder."""
    path = keys_dir / WEB_SECRET
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        atomic_write_text(path, key + "\n", mode=0o600)
        return key


def new_setup_code() -> str:
    """A fresh admin setup code: three groups of four characters that cannot be misread."""
    groups = ("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3))
    return "-".join(groups)


def setup_code_path(keys_dir: Path) -> Path:
    return keys_dir / ADMIN_SETUP_CODE

"""Ed25519 keys and detached signatures in minisign's file formats.

The formats are minisign's, so an independent tool (``minisign -Vm FILE -p KEY.pub``, Debian package
``minisign``) checks what the library signs:

- public key: ``untrusted comment: ...`` then base64 of ``"Ed" | key id (8) | public key (32)``;
- secret key (unencrypted, as ``minisign -G -W`` writes it): base64 of ``"Ed" | kdf "\\0\\0" | "B2" |
  salt (32) | opslimit (8) | memlimit (8) | key id (8) | secret key (64) | BLAKE2b-256 checksum (32)``;
- signature: ``untrusted comment``, base64 of ``"ED" | key id | Ed25519 signature of the file's
  BLAKE2b-512 hash``, ``trusted comment: ...``, base64 of the Ed25519 signature of
  ``signature | trusted comment`` (so the trusted comment cannot be swapped).
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.messages import N_, SaidError
from appliance.storage.atomic import atomic_write_text

PREHASHED = b"ED"
PLAIN = b"Ed"
CHECKSUM = b"B2"
NO_KDF = b"\0\0"


class SignatureError(SaidError):
    """A signature or key file is malformed, unknown or does not verify."""


class SignatureInvalid(SignatureError):
    """The signature does not match the signed bytes (they were changed, or it is forged)."""


class UnknownKey(SignatureError):
    """The signature was made by a key this box does not trust."""


class MalformedKey(SignatureError):
    """A key file is not a minisign key."""


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # 8 bytes
    key: Ed25519PublicKey

    @property
    def key_id_hex(self) -> str:
        return self.key_id[::-1].hex().upper()

    def raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def to_text(self) -> str:
        blob = base64.b64encode(PLAIN + self.key_id + self.raw()).decode()
        return f"untrusted comment: minisign public key {self.key_id_hex}\n{blob}\n"


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.key.public_key())

    def to_text(self) -> str:
        from cryptography.hazmat.primitives import serialization

        seed = self.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())
        secret = seed + self.public.raw()
        checksum = hashlib.blake2b(PLAIN + self.key_id + secret, digest_size=32).digest()
        blob = PLAIN + NO_KDF + CHECKSUM + bytes(32) + bytes(8) + bytes(8) + self.key_id + secret + checksum
        return ("untrusted comment: minisign secret key (unencrypted; keep this file private)\n"
                + base64.b64encode(blob).decode() + "\n")


def generate() -> SecretKey:
    return SecretKey(os.urandom(8), Ed25519PrivateKey.generate())


def _payload(text: str, what: str) -> bytes:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].startswith("untrusted comment:"):
        raise MalformedKey(N_("this is not a minisign %(what)s (no 'untrusted comment' line)"), what=what)
    try:
        return base64.b64decode(lines[1], validate=True)
    except ValueError:
        raise MalformedKey(N_("the %(what)s is not valid base64"), what=what) from None


def parse_public_key(text: str) -> PublicKey:
    data = _payload(text, "public key")
    if len(data) != 42 or data[:2] != PLAIN:
        raise MalformedKey(N_("the public key is not an Ed25519 minisign key"))
    return PublicKey(data[2:10], Ed25519PublicKey.from_public_bytes(data[10:]))


def parse_secret_key(text: str) -> SecretKey:
    data = _payload(text, "secret key")
    if len(data) != 158 or data[:2] != PLAIN or data[4:6] != CHECKSUM:
        raise MalformedKey(N_("the secret key is not an Ed25519 minisign key"))
    if data[2:4] != NO_KDF:
        raise MalformedKey(N_("the secret key is password-protected; make one with `library keygen` instead"))
    key_id, secret, checksum = data[54:62], data[62:126], data[126:158]
    if hashlib.blake2b(PLAIN + key_id + secret, digest_size=32).digest() != checksum:
        raise MalformedKey(N_("the secret key's checksum does not match (damaged file)"))
    return SecretKey(key_id, Ed25519PrivateKey.from_private_bytes(secret[:32]))


def write_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """Make a key pair in ``folder``: NAME.key (owner-only) and NAME.pub. Refuses to overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    secret_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (secret_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already; keys are never overwritten")
    key = generate()
    atomic_write_text(secret_path, key.to_text(), mode=0o600)
    atomic_write_text(public_path, key.public.to_text(), mode=0o644)
    return secret_path, public_path


def sign(data: bytes, key: SecretKey, trusted_comment: str) -> str:
    """A minisign signature file (prehashed) of ``data``."""
    if "\n" in trusted_comment or "\r" in trusted_comment:
        raise ValueError("a trusted comment is one line")
    signature = key.key.sign(hashlib.blake2b(data, digest_size=64).digest())
    global_signature = key.key.sign(signature + trusted_comment.encode())
    return (
        f"untrusted comment: signature from library secret key {key.public.key_id_hex}\n"
        f"{base64.b64encode(PREHASHED + key.key_id + signature).decode()}\n"
        f"trusted comment: {trusted_comment}\n"
        f"{base64.b64encode(global_signature).decode()}\n"
    )


def verify(data: bytes, signature_text: str, keys: list[PublicKey]) -> str:
    """Check a minisign signature of ``data`` made by one of ``keys``; returns the trusted comment."""
    lines = signature_text.splitlines()
    if len(lines) < 4 or not lines[0].startswith("untrusted comment:") or not lines[2].startswith("trusted comment: "):
        raise SignatureInvalid(N_("the signature file is not in minisign's format"))
    try:
        blob = base64.b64decode(lines[1].strip(), validate=True)
        global_signature = base64.b64decode(lines[3].strip(), validate=True)
    except ValueError:
        raise SignatureInvalid(N_("the signature file is not valid base64")) from None
    if len(blob) != 74 or blob[:2] not in (PREHASHED, PLAIN) or len(global_signature) != 64:
        raise SignatureInvalid(N_("the signature is not an Ed25519 minisign signature"))
    key_id, signature = blob[2:10], blob[10:]
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None:
        raise UnknownKey(N_("signed by key %(key)s, which this box does not trust"), key=key_id[::-1].hex().upper())
    message = hashlib.blake2b(data, digest_size=64).digest() if blob[:2] == PREHASHED else data
    trusted = lines[2][len("trusted comment: "):]
    try:
        key.key.verify(signature, message)
        key.key.verify(global_signature, signature + trusted.encode())
    except InvalidSignature:
        raise SignatureInvalid(N_("the signature does not match: the file or its trusted comment was changed")) from None
    return trusted


def load_public_keys(folder: Path) -> list[PublicKey]:
    """Every ``*.pub`` minisign key in ``folder`` (missing folder: none)."""
    keys = []
    if folder.is_dir():
        for path in sorted(folder.glob("*.pub")):
            try:
                keys.append(parse_public_key(path.read_text(encoding="utf-8")))
            except (MalformedKey, UnicodeDecodeError, ValueError):
                continue
    return keys

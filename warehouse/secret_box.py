"""Tenant secrets at rest: AES-256-GCM under one master key.

The master key is `AW_MASTER_KEY` (base64 of 32 bytes) when set, else a key file under the
data directory, created on first use readable by its owner only (embedded mode). Nothing in
this module ever puts key material into a message, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from warehouse.config import PlatformSettings

KEY_BYTES = 32
NONCE_BYTES = 12
# First byte of every sealed value, so a later key-rotation scheme can tell formats apart.
_FORMAT_V1 = b"\x01"


class SecretBoxError(Exception):
    """The master key is missing, malformed or wrong, or a sealed value is damaged."""


class SecretBox:
    """Seals and opens small secrets; the associated data binds each one to its owner."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretBoxError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<master key hidden>)"

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt with a fresh random nonce: format byte, nonce, ciphertext and tag."""
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        """Decrypt what `seal` produced for the same associated data."""
        if sealed[:1] != _FORMAT_V1:
            raise SecretBoxError("sealed secret has an unknown format")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, associated)
        except InvalidTag:
            raise SecretBoxError(
                "cannot decrypt a stored secret: wrong master key or damaged registry"
            ) from None


def load_secret_box(settings: PlatformSettings) -> SecretBox:
    """The box for this platform: from `AW_MASTER_KEY`, else the key file (created if absent)."""
    if settings.master_key is not None and settings.master_key.get_secret_value():
        return SecretBox(_decode(settings.master_key.get_secret_value(), "AW_MASTER_KEY"))
    path = settings.master_key_path
    if not path.exists():
        _create_key_file(path)
    return SecretBox(_read_key_file(path))


def _decode(text: str, origin: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretBoxError(f"{origin} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise SecretBoxError(f"{origin} must be base64 of {KEY_BYTES} bytes")
    return key


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Like ssh with a private key: refuse rather than use a key others could read.
        raise SecretBoxError(
            f"master key file {path} has mode {mode:o}; it must be 600 (chmod 600 {path})"
        )
    return _decode(path.read_text(encoding="ascii"), f"master key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new random key atomically; if another process won the race, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if the name exists, so two processes never overwrite each other.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

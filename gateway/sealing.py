"""Secrets the gateway must read back (not verify), encrypted at rest under the CA passphrase.

EAB HMAC keys and a directory service account's password have to be used, not just
compared, so they cannot be hashed. They are sealed with AES-256-GCM under a key derived
from the CA passphrase (scrypt once, then HKDF per purpose), with what the secret belongs
to bound as associated data, so a sealed value copied to another record does not open.
Replicas share the passphrase, so a value sealed by one opens on all; a database dump
alone opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import GatewayError

PREFIX = "v1."
_SALT = b"enrollment-gateway sealing v1"


class SealError(GatewayError):
    """A sealed value does not open (tampered, another record's, or another passphrase)."""


def stretch(passphrase: bytes, salt: bytes = _SALT) -> bytes:
    """The passphrase stretched once (tens of milliseconds): build sealers at start-up."""
    return hashlib.scrypt(passphrase, salt=salt, n=2**14, r=8, p=1, dklen=32)


def derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


_SEALED_RE = re.compile(r"^v1\.[A-Za-z0-9_-]{38,}={0,2}$")  # 12-byte IV + 16-byte tag at least


def is_sealed(value: str) -> bool:
    """Whether ``value`` has the form :meth:`Sealer.seal` gives (not whether it opens)."""
    return _SEALED_RE.match(value) is not None


class Sealer:
    """AES-256-GCM under one derived key; ``context`` is bound as associated data."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secret: bytes, context: str) -> str:
        iv = os.urandom(12)
        return PREFIX + base64.urlsafe_b64encode(iv + self._aead.encrypt(iv, secret, context.encode())).decode()

    def unseal(self, token: str, context: str) -> bytes:
        if not is_sealed(token):
            raise SealError("unknown sealed-value format")
        try:
            raw = base64.urlsafe_b64decode(token[len(PREFIX):])
            return self._aead.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise SealError("sealed value does not open with this CA passphrase") from None

"""Keys the ACME server derives from the CA passphrase: for nonces and for sealing EAB keys.

Replicas that share a database share the CA passphrase (they must, to use the CA
keys), so keys derived from it agree across replicas without storing anything:
a nonce minted by one replica verifies on another, and an EAB HMAC key sealed by
one unseals on another. The passphrase is stretched once (scrypt) and split with
HKDF, so a database dump alone reveals neither.

EAB HMAC keys are *encrypted*, not hashed: verifying an EAB binding means
computing an HMAC with the key itself, which a hash cannot give back. Changing
the CA passphrase therefore makes existing unbound EAB keys unusable (they fail to
unseal and are refused); bound accounts are unaffected.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import GatewayError

_SALT = b"enrollment-gateway acme keyring v1"
_SEAL_PREFIX = "v1."


class SealError(GatewayError):
    """A sealed value does not open with this keyring (tampered, or another passphrase)."""


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class Keyring:
    """Derived keys. Building one stretches the passphrase (tens of milliseconds): the
    ACME runtime and the admin routes each build theirs once, at start."""

    def __init__(self, passphrase: bytes) -> None:
        master = hashlib.scrypt(passphrase, salt=_SALT, n=2**14, r=8, p=1, dklen=32)
        self.nonce_key = _hkdf(master, b"acme nonce hmac")
        self._eab = AESGCM(_hkdf(master, b"acme eab seal"))

    def seal(self, secret: bytes, context: str) -> str:
        """AES-256-GCM with ``context`` (e.g. config and key id) bound as associated data."""
        iv = os.urandom(12)
        sealed = self._eab.encrypt(iv, secret, context.encode())
        return _SEAL_PREFIX + base64.urlsafe_b64encode(iv + sealed).decode()

    def unseal(self, token: str, context: str) -> bytes:
        if not token.startswith(_SEAL_PREFIX):
            raise SealError("unknown sealed-value format")
        try:
            raw = base64.urlsafe_b64decode(token[len(_SEAL_PREFIX):])
            return self._eab.decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise SealError("sealed value does not open with this CA passphrase") from None

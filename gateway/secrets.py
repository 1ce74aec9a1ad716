"""Hashing of secrets the gateway must verify but never show again.

Passwords and challenge secrets chosen by people use scrypt (slow, salted); random
API keys of 256 bits use SHA-256 (a slow hash adds nothing to that much entropy,
and lookup by hash stays an index hit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random secret (API keys, dev passwords, challenges)."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "scrypt${}${}${}${}${}".format(
        _SCRYPT_N, _SCRYPT_R, _SCRYPT_P,
        base64.b64encode(salt).decode(), base64.b64encode(digest).decode(),
    )


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against :func:`hash_secret` output."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest_b64)
        actual = hashlib.scrypt(
            secret.encode(), salt=base64.b64decode(salt_b64), n=int(n), r=int(r), p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

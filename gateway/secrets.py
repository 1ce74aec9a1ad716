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
from collections import OrderedDict

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


_VERIFIED_CACHE_SIZE = 4096
_verified: "OrderedDict[bytes, None]" = OrderedDict()
_cache_key = secrets.token_bytes(32)


def _verified_token(secret: str, stored: str) -> bytes:
    # A keyed MAC of the pair, never the secret itself, is what the cache remembers.
    return hmac.new(_cache_key, secret.encode() + b"\0" + stored.encode(), hashlib.sha256).digest()


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of a secret against :func:`hash_secret` output.

    scrypt is deliberately slow (about 50 ms); devices that present the same static
    challenge or Basic password on every request would pay it each time. Successful
    checks are remembered for this process in a bounded cache keyed by an HMAC of
    (secret, stored hash) under a per-process random key; failures are never cached,
    and a changed stored hash misses the cache.
    """
    token = _verified_token(secret, stored)
    if token in _verified:
        _verified.move_to_end(token)
        return True
    ok = _scrypt_matches(secret, stored)
    if ok:
        _verified[token] = None
        if len(_verified) > _VERIFIED_CACHE_SIZE:
            _verified.popitem(last=False)
    return ok


def _scrypt_matches(secret: str, stored: str) -> bool:
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

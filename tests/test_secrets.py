"""Secret hashing: scrypt for people's secrets, with a cache of successful checks only."""

from __future__ import annotations

import pytest

from gateway import secrets as gw_secrets


def test_verify_secret_and_cache_of_successes(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = gw_secrets.hash_secret("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    calls: list[str] = []
    real = gw_secrets._scrypt_matches

    def counting(secret: str, hashed: str) -> bool:
        calls.append(secret)
        return real(secret, hashed)

    monkeypatch.setattr(gw_secrets, "_scrypt_matches", counting)
    assert gw_secrets.verify_secret("wrong", stored) is False
    assert gw_secrets.verify_secret("wrong", stored) is False
    assert calls == ["wrong", "wrong"]  # failures are never cached
    assert gw_secrets.verify_secret("correct horse", stored) is True
    assert gw_secrets.verify_secret("correct horse", stored) is True
    assert calls == ["wrong", "wrong", "correct horse"]  # the second success came from the cache
    rotated = gw_secrets.hash_secret("new secret")
    assert gw_secrets.verify_secret("correct horse", rotated) is False  # a new hash misses the cache
    assert gw_secrets.verify_secret("x", "not-a-hash") is False

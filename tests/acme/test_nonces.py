"""Replay nonces: authentic only with the right key, unexpired, canonical; minted without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.acme.keyring import Keyring
from protocols.acme.nonces import NonceMinter, b64url, b64url_decode

HOUR = dt.timedelta(hours=1)


def test_a_minted_nonce_checks_until_it_expires() -> None:
    minter = NonceMinter(b"k" * 32)
    nonce = minter.mint(now=1_000_000)
    expires = minter.check(nonce, HOUR, now=1_000_000 + 3599)
    assert expires == dt.datetime.fromtimestamp(1_000_000 + 3600, dt.timezone.utc)
    assert minter.check(nonce, HOUR, now=1_000_000 + 3600) is None
    assert minter.check(nonce, HOUR, now=1_000_000 - 3600) is None  # from the far future


def test_nonces_are_unique_and_urlsafe() -> None:
    minter = NonceMinter(b"k" * 32)
    nonces = {minter.mint() for _ in range(2000)}
    assert len(nonces) == 2000
    assert all(set(n) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for n in nonces)


def test_another_key_or_a_flipped_bit_is_refused() -> None:
    minter, other = NonceMinter(b"a" * 32), NonceMinter(b"b" * 32)
    nonce = minter.mint()
    assert other.check(nonce, HOUR) is None
    raw = bytearray(b64url_decode(nonce))
    for i in (0, 5, len(raw) - 1):
        tampered = bytearray(raw)
        tampered[i] ^= 1
        assert minter.check(b64url(bytes(tampered)), HOUR) is None
    assert minter.check(nonce[:-2], HOUR) is None
    assert minter.check(nonce + "AA", HOUR) is None
    assert minter.check("", HOUR) is None
    assert minter.check("not base64!", HOUR) is None


def test_replicas_with_the_same_passphrase_agree_and_others_do_not() -> None:
    a, b, c = Keyring(b"same secret"), Keyring(b"same secret"), Keyring(b"other secret")
    nonce = NonceMinter(a.nonce_key).mint()
    assert NonceMinter(b.nonce_key).check(nonce, HOUR) is not None
    assert NonceMinter(c.nonce_key).check(nonce, HOUR) is None


@pytest.mark.parametrize("text", ["YQ==", "YQ", "Y+Q", "Y/Q", "YR", " YQ"])
def test_base64url_is_strict(text: str) -> None:
    if text == "YQ":
        assert b64url_decode(text) == b"a"
        return
    with pytest.raises(ValueError):
        b64url_decode(text)

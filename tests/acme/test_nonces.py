"""Replay nonces: authentic only with the right key, unexpired, canonical; minted without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.acme.keyring import Keyring
from protocols.acme.nonces import MemoryNonces, NonceMinter, NonceReused, b64url, b64url_decode

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


def test_memory_nonces_are_single_use_and_only_this_process_s() -> None:
    mine, other = MemoryNonces(), MemoryNonces()
    nonce = mine.mint()
    assert other.check(nonce, HOUR) is None  # a key of its own per process
    assert mine.check(nonce, HOUR) is not None
    mine.use(nonce)
    with pytest.raises(NonceReused):
        mine.use(nonce)
    assert mine.check(nonce, HOUR) is not None  # authentic; its use is what is refused


def test_memory_nonces_keep_a_window_of_fixed_size() -> None:
    nonces = MemoryNonces(window=64)
    first = nonces.mint()
    assert nonces.check(first, HOUR) is not None
    minted = [nonces.mint() for _ in range(63)]
    assert nonces.check(first, HOUR) is not None  # still among the last 64
    nonces.mint()
    assert nonces.check(first, HOUR) is None  # pushed out of the window: badNonce
    for _ in range(20):  # use everything in the window, many times over
        for n in minted[-10:]:
            if nonces.check(n, HOUR) is not None:
                try:
                    nonces.use(n)
                except NonceReused:
                    pass
        minted = [nonces.mint() for _ in range(64)]
        for n in minted:
            nonces.use(n)
    assert len(nonces._used) <= 2 * 64


def test_memory_nonces_expire_like_shared_ones() -> None:
    nonces = MemoryNonces()
    nonce = nonces.mint(now=1_000_000)
    assert nonces.check(nonce, HOUR, now=1_000_000 + 3599) is not None
    assert nonces.check(nonce, HOUR, now=1_000_000 + 3600) is None

"""Replay nonces: HMAC-authenticated; single use recorded in the store or, without replicas, in memory.

A nonce is ``base64url(issued_at:4 || random:12 || tag:12)`` where the tag is
HMAC-SHA256 over the first 16 bytes with a key derived from the CA passphrase
(:mod:`.keyring`). Minting needs no database round trip; checking needs one
insert into ``acme_used_nonces`` (primary key = the nonce), which fails for a
nonce seen before, on whichever replica it was used. Nonces older than the
configured lifetime are refused without touching the store, and rows of expired
nonces are deleted by the janitor.

A gateway whose store has no replicas (``[store] replicas``; SQLite by default) uses
:class:`MemoryNonces` instead, as Boulder's nonce service does: a key of its own,
random per process, so only nonces it minted verify (after a restart, or at another
process, a nonce is simply ``badNonce`` and clients retry with the fresh one they
were given), and a sequence number in each nonce so the used ones fit a window of
fixed size. No database write per request, and memory bounded whatever the load.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import itertools
import os
import struct
import time

_TAG = 12
_BODY = 16
_CLOCK_SKEW = 60  # seconds a nonce may appear to come from the future (replica clocks)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2); ValueError otherwise."""
    if not isinstance(text, str) or "=" in text or any(c in text for c in "+/ \n\r\t"):
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if b64url(raw) != text:  # non-canonical trailing bits
        raise ValueError("not canonical base64url")
    return raw


class NonceReused(Exception):
    """The nonce was used before (each may authenticate one request)."""


class NonceMinter:
    """Nonces any replica holding the same key accepts; their use is recorded by the store."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_TAG]

    def mint(self, now: float | None = None) -> str:
        body = struct.pack(">I", int(now if now is not None else time.time())) + os.urandom(_BODY - 4)
        return b64url(body + self._tag(body))

    def check(self, nonce: str, lifetime: dt.timedelta, now: float | None = None) -> dt.datetime | None:
        """When an authentic, unexpired nonce expires; None if it is forged, mangled or old."""
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return None
        if len(raw) != _BODY + _TAG:
            return None
        body, tag = raw[:_BODY], raw[_BODY:]
        if not hmac.compare_digest(tag, self._tag(body)):
            return None
        issued = struct.unpack(">I", body[:4])[0]
        current = now if now is not None else time.time()
        expires = issued + lifetime.total_seconds()
        if issued > current + _CLOCK_SKEW or expires <= current:
            return None
        return dt.datetime.fromtimestamp(expires, dt.timezone.utc)


class MemoryNonces(NonceMinter):
    """Nonces of this process only, their single use tracked here (see the module doc).

    The body carries a sequence number instead of most of the randomness: a nonce is
    accepted only while it is among the last ``window`` minted, so the set of used
    sequence numbers never holds more than about two windows' worth.
    """

    def __init__(self, window: int = 1 << 16) -> None:
        super().__init__(os.urandom(32))
        self._window = window
        self._sequence = itertools.count()
        self._next = 0
        self._used: set[int] = set()

    def mint(self, now: float | None = None) -> str:
        number = next(self._sequence)
        self._next = number + 1
        if number % self._window == 0 and self._used:
            floor = self._next - self._window
            self._used = {n for n in self._used if n >= floor}
        body = struct.pack(">IQ", int(now if now is not None else time.time()), number) + os.urandom(_BODY - 12)
        return b64url(body + self._tag(body))

    def _number(self, nonce: str) -> int:
        return int(struct.unpack(">Q", b64url_decode(nonce)[4:12])[0])

    def check(self, nonce: str, lifetime: dt.timedelta, now: float | None = None) -> dt.datetime | None:
        """As :meth:`NonceMinter.check`; also None once ``window`` newer nonces were minted."""
        expires = super().check(nonce, lifetime, now)
        if expires is None or self._number(nonce) < self._next - self._window:
            return None
        return expires

    def use(self, nonce: str) -> None:
        """Mark a nonce that passed :meth:`check` as used; :class:`NonceReused` the second time."""
        number = self._number(nonce)
        if number in self._used:
            raise NonceReused("nonce already used")
        self._used.add(number)

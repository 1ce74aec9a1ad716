"""Replay nonces that any replica can check: HMAC-authenticated, single use recorded in the store.

A nonce is ``base64url(issued_at:4 || random:12 || tag:12)`` where the tag is
HMAC-SHA256 over the first 16 bytes with a key derived from the CA passphrase
(:mod:`.keyring`). Minting needs no database round trip; checking needs one
insert into ``acme_used_nonces`` (primary key = the nonce), which fails for a
nonce seen before, on whichever replica it was used. Nonces older than the
configured lifetime are refused without touching the store, and rows of expired
nonces are deleted by the janitor.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
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


class NonceMinter:
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

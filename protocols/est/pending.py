"""Remembering held requests so a client's retry finds its answer (RFC 7030 4.2.3).

The request key is a hash of what makes two requests "the same request" for a
client: the public key, the subject and the SANs. The CSR bytes themselves are
not used because a client that links its CSR to the TLS session (tls-unique in
the challengePassword) necessarily sends different bytes on every connection.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import delete, select

from gateway.clock import Clock
from gateway.door import ProtocolTables
from gateway.errors import Conflict

from .schema import pending_requests as table


def request_key(csr: x509.CertificateSigningRequest) -> str:
    """SHA-256 over the request's public key, subject and SAN extension (hex)."""
    digest = hashlib.sha256()
    digest.update(csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    digest.update(b"\x00" + csr.subject.public_bytes())
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        digest.update(b"\x00" + san.value.public_bytes())
    except x509.ExtensionNotFound:
        pass
    return digest.hexdigest()


@dataclass(frozen=True)
class HeldRequest:
    request_id: str
    label: str
    client: str
    request_key: str


class PendingRequests:
    """Data access for ``est_pending_requests``, EST's own table, through the door's
    handle on it (SQLite or PostgreSQL: the same statements)."""

    def __init__(self, tables: ProtocolTables, clock: Clock) -> None:
        self._tables = tables
        self._clock = clock

    async def find(self, label: str, client: str, key: str) -> HeldRequest | None:
        c = table.c
        stmt = select(table).where(c.label == label, c.client == client, c.request_key == key)
        async with self._tables.read() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return HeldRequest(row.request_id, row.label, row.client, row.request_key)

    async def remember(self, held: HeldRequest) -> bool:
        """Record the mapping; False when an identical request was recorded concurrently."""
        try:
            async with self._tables.transaction() as conn:
                await conn.execute(table.insert().values(
                    request_id=held.request_id, label=held.label, client=held.client,
                    request_key=held.request_key, created_at=self._clock(),
                ))
        except Conflict:
            return False
        return True

    async def forget(self, request_id: str) -> None:
        async with self._tables.transaction() as conn:
            await conn.execute(delete(table).where(table.c.request_id == request_id))

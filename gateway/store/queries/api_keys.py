"""The ``api_keys`` table: admin API keys and client certificates, by SHA-256 only."""

from __future__ import annotations

from sqlalchemy import bindparam, or_, select

from .. import schema as t
from ..records import ApiKeyRecord
from .base import TableQueries, values_of

ApiKeyRecords = list[ApiKeyRecord]

_c = t.api_keys.c
_INSERT = t.api_keys.insert()
_BY_HASH = select(t.api_keys).where(_c.key_sha256 == bindparam("sha256"))  # every admin request


class ApiKeyQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: ApiKeyRecord) -> None:
        values = values_of(rec)
        values["key_sha256"] = rec.key_sha256.lower()
        await self._insert(_INSERT, values, f"an API key named {rec.name!r}")

    async def by_hash(self, sha256_hex: str) -> ApiKeyRecord | None:
        return await self._one(ApiKeyRecord, _BY_HASH, "API key", {"sha256": sha256_hex.lower()})

    async def list(self) -> ApiKeyRecords:
        """Oldest first."""
        return await self._all(ApiKeyRecord, select(t.api_keys).order_by(_c.created_at, _c.id), "API keys")

    async def find(self, name_or_id: str) -> ApiKeyRecord | None:
        """By name, else by id (names are unique)."""
        stmt = select(t.api_keys).where(or_(_c.name == name_or_id, _c.id == name_or_id)).order_by(
            (_c.name == name_or_id).desc())
        found = await self._all(ApiKeyRecord, stmt, "API key")
        return found[0] if found else None

    async def revoke(self, key_id: str) -> bool:
        """Mark revoked; False when it already was (or does not exist)."""
        return await self._update(t.api_keys, (_c.id == key_id) & _c.revoked.is_(False),
                                  {"revoked": True}, "API key") == 1

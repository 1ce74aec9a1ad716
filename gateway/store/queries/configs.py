"""The ``protocol_configs`` table: which CA and profiles each protocol endpoint uses.

Every write bumps the ``config`` generation in the same transaction, so every
worker and replica sees an edit on its next request (caches are keyed by it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from .. import schema as t
from ..errors import translated
from ..records import ProtocolConfigRecord
from .base import TableQueries, checked_fields, values_of
from .generations import CONFIG, GenerationQueries

ProtocolConfigRecords = list[ProtocolConfigRecord]

_c = t.protocol_configs.c
_INSERT = t.protocol_configs.insert()
# read by every enrollment whose configuration is not cached
_BY_ID = select(t.protocol_configs).where(_c.id == bindparam("config_id"))


class ConfigQueries(TableQueries):
    __slots__ = ()

    async def _bump(self) -> None:
        await GenerationQueries(self._conn).bump(CONFIG)

    async def insert(self, rec: ProtocolConfigRecord) -> None:
        await self._insert(_INSERT, values_of(rec), f"protocol configuration {rec.id!r}")
        await self._bump()

    async def get(self, config_id: str) -> ProtocolConfigRecord | None:
        return await self._one(ProtocolConfigRecord, _BY_ID, "protocol configuration", {"config_id": config_id})

    async def list(self, protocol: str | None = None) -> ProtocolConfigRecords:
        """By id."""
        stmt = select(t.protocol_configs).order_by(_c.id)
        if protocol is not None:
            stmt = stmt.where(_c.protocol == protocol)
        return await self._all(ProtocolConfigRecord, stmt, "protocol configurations")

    async def update(self, config_id: str, **fields: Any) -> None:
        values = checked_fields(ProtocolConfigRecord, fields, frozenset({"id"}))
        await self._update_or_missing(t.protocol_configs, config_id, values, f"protocol configuration {config_id!r}")
        await self._bump()

    async def delete(self, config_id: str) -> bool:
        """False if there was no such configuration."""
        with translated(f"protocol configuration {config_id!r}"):
            result = await self._conn.execute(t.protocol_configs.delete().where(_c.id == config_id))
        await self._bump()
        return result.rowcount == 1

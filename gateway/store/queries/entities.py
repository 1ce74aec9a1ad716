"""The ``end_entities`` table: devices, users and accounts that request certificates,
unique by name within a protocol configuration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from .. import schema as t
from ..direct_reads import PreparedRead
from ..records import EndEntityRecord, utcnow
from .base import TableQueries, checked_fields, page, values_of

EndEntityRecords = list[EndEntityRecord]

_c = t.end_entities.c
# every enrollment looks its end entity up by name
_INSERT = t.end_entities.insert()
_BY_ID = select(t.end_entities).where(_c.id == bindparam("entity_id"))
# every ACME request reads its account's status
PREPARED_STATUS_BY_ID = PreparedRead(select(_c.status).where(_c.id == bindparam("entity_id")))
_BY_NAME = (select(t.end_entities).where(_c.name == bindparam("name"), _c.protocol_config == bindparam("config_id"))
            .order_by(_c.created_at, _c.id).limit(1))
_BY_NAME_UNBOUND = (select(t.end_entities).where(_c.name == bindparam("name"), _c.protocol_config.is_(None))
                    .order_by(_c.created_at, _c.id).limit(1))

# every enrollment finds its end entity by name
PREPARED_BY_NAME = PreparedRead(_BY_NAME)
PREPARED_BY_NAME_UNBOUND = PreparedRead(_BY_NAME_UNBOUND)


class EntityQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: EndEntityRecord) -> None:
        """Conflict if the name is taken in the configuration."""
        await self._insert(_INSERT, values_of(rec), f"end entity {rec.id!r}")

    async def get(self, entity_id: str) -> EndEntityRecord | None:
        return await self._one(EndEntityRecord, _BY_ID, "end entity", {"entity_id": entity_id})

    async def find(self, name: str, protocol_config: str | None) -> EndEntityRecord | None:
        """The entity called ``name`` within ``protocol_config`` (None: not bound to one)."""
        if protocol_config is None:
            return await self._one(EndEntityRecord, _BY_NAME_UNBOUND, "end entity", {"name": name})
        return await self._one(EndEntityRecord, _BY_NAME, "end entity", {"name": name, "config_id": protocol_config})

    async def list(self, status: str | None = None, protocol_config: str | None = None,
                   limit: int = 100, offset: int = 0) -> EndEntityRecords:
        """Ordered by name."""
        limit, offset = page(limit, offset)
        conds = []
        if status is not None:
            conds.append(_c.status == status)
        if protocol_config is not None:
            conds.append(_c.protocol_config == protocol_config)
        stmt = select(t.end_entities).where(*conds).order_by(_c.name, _c.id).limit(limit).offset(offset)
        return await self._all(EndEntityRecord, stmt, "end entities")

    async def update(self, entity_id: str, **fields: Any) -> None:
        """Change entity columns; ``updated_at`` is set to now unless given."""
        values = checked_fields(EndEntityRecord, fields, frozenset({"id"}))
        values.setdefault("updated_at", utcnow())
        await self._update_or_missing(t.end_entities, entity_id, values, f"end entity {entity_id!r}")

"""The ``events`` table: the audit trail, appended to and listed newest first."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.sql.elements import ColumnElement

from .. import schema as t
from ..records import EventFilter, EventRecord
from .base import TableQueries, normalize_serial, page, values_of

EventRecords = list[EventRecord]

_c = t.events.c
_INSERT = t.events.insert()  # every enrollment appends one


def _conditions(flt: EventFilter | None) -> list[ColumnElement[bool]]:
    if flt is None:
        return []
    conds: list[ColumnElement[bool]] = []
    for name in ("type", "status", "entity_id", "protocol_config", "ca_id"):
        value = getattr(flt, name)
        if value is not None:
            conds.append(_c[name] == value)
    if flt.serial is not None:
        conds.append(_c.serial == normalize_serial(flt.serial))
    if flt.since is not None:
        conds.append(_c.created_at >= flt.since)
    return conds


class EventQueries(TableQueries):
    __slots__ = ()

    async def add(self, rec: EventRecord) -> int:
        """Append an audit event; returns its id (``rec.id`` is ignored). No savepoint:
        nobody retries an event inside its transaction."""
        values = values_of(rec, drop=("id",))
        if rec.serial is not None:
            values["serial"] = normalize_serial(rec.serial)
        result = await self._insert(_INSERT, values, "event", savepoint=False)
        return int(result.inserted_primary_key[0])

    async def list(self, flt: EventFilter | None = None, limit: int = 100, offset: int = 0) -> EventRecords:
        """Newest first (by time, then insertion order)."""
        limit, offset = page(limit, offset)
        stmt = (
            select(t.events).where(*_conditions(flt))
            .order_by(_c.created_at.desc(), _c.id.desc()).limit(limit).offset(offset)
        )
        return await self._all(EventRecord, stmt, "events")

    async def after(self, event_id: int, limit: int = 500) -> EventRecords:
        """Events with an id above ``event_id``, oldest first (a cursor's next batch)."""
        stmt = select(t.events).where(_c.id > event_id).order_by(_c.id).limit(limit)
        return await self._all(EventRecord, stmt, "events")

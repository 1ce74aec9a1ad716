"""The ``destinations`` and ``outbox`` tables: certificate distribution (gateway/distribution.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, or_, select

from .. import schema as t
from ..records import DestinationRecord, OutboxRecord
from ..errors import translated
from .base import TableQueries, checked_fields, record, values_of

Destinations = list[DestinationRecord]
OutboxEntries = list[OutboxRecord]

_d = t.destinations.c
_o = t.outbox.c
_INSERT_DESTINATION = t.destinations.insert()
_INSERT_OUTBOX = t.outbox.insert()
_ENABLED_FOR_CONFIG = (select(t.destinations)
                       .where(_d.protocol_config == bindparam("config_id"), _d.enabled.is_(True))
                       .order_by(_d.created_at, _d.id))


class DestinationQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: DestinationRecord) -> None:
        await self._insert(_INSERT_DESTINATION, values_of(rec), f"destination {rec.id!r}")

    async def get(self, destination_id: str) -> DestinationRecord | None:
        return await self._one(DestinationRecord, select(t.destinations).where(_d.id == destination_id),
                               "destination")

    async def list(self, protocol_config: str | None = None, *, enabled_only: bool = False) -> Destinations:
        if protocol_config is not None and enabled_only:  # every issuance asks (distribution.enqueue_issued)
            with translated("destinations"):
                rows = (await self._conn.execute(_ENABLED_FOR_CONFIG, {"config_id": protocol_config})).all()
            return [record(DestinationRecord, row) for row in rows]
        conds = []
        if protocol_config is not None:
            conds.append(_d.protocol_config == protocol_config)
        if enabled_only:
            conds.append(_d.enabled.is_(True))
        stmt = select(t.destinations).where(*conds).order_by(_d.created_at, _d.id)
        return await self._all(DestinationRecord, stmt, "destinations")

    async def delete(self, destination_id: str) -> bool:
        result = await self._conn.execute(t.destinations.delete().where(_d.id == destination_id))
        return bool(result.rowcount)


class OutboxQueries(TableQueries):
    __slots__ = ()

    async def add(self, rec: OutboxRecord) -> None:
        await self._insert(_INSERT_OUTBOX, values_of(rec), f"outbox entry {rec.id!r}", savepoint=False)

    async def get(self, entry_id: str) -> OutboxRecord | None:
        return await self._one(OutboxRecord, select(t.outbox).where(_o.id == entry_id), "outbox entry")

    async def list(self, status: str | None = None, limit: int = 100) -> OutboxEntries:
        conds = [_o.status == status] if status is not None else []
        stmt = select(t.outbox).where(*conds).order_by(_o.created_at.desc(), _o.id).limit(limit)
        return await self._all(OutboxRecord, stmt, "outbox")

    async def due(self, now: dt.datetime, limit: int) -> OutboxEntries:
        """Pending entries whose time has come and that no worker holds (or whose lease lapsed)."""
        stmt = (select(t.outbox)
                .where(_o.status == "pending", _o.next_attempt_at <= now,
                       or_(_o.lease_until.is_(None), _o.lease_until < now))
                .order_by(_o.next_attempt_at, _o.id).limit(limit))
        return await self._all(OutboxRecord, stmt, "outbox")

    async def claim(self, entry_id: str, now: dt.datetime, until: dt.datetime) -> bool:
        """Compare-and-set: this worker delivers the entry until ``until`` (another replica's
        worker, or this one after a crash, takes it again once the lease lapses)."""
        where = ((_o.id == entry_id) & (_o.status == "pending")
                 & or_(_o.lease_until.is_(None), _o.lease_until < now))
        return await self._update(t.outbox, where, {"lease_until": until}, "outbox entry") == 1

    async def update(self, entry_id: str, **fields: Any) -> None:
        values = checked_fields(OutboxRecord, fields, frozenset({"id"}))
        await self._update_or_missing(t.outbox, entry_id, values, f"outbox entry {entry_id!r}")

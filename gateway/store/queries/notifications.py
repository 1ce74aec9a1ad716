"""The ``notification_handlers`` table (gateway/notifications.py)."""

from __future__ import annotations

from sqlalchemy import select

from .. import schema as t
from ..records import NotificationHandlerRecord
from .base import TableQueries, values_of

Handlers = list[NotificationHandlerRecord]

_c = t.notification_handlers.c
_INSERT = t.notification_handlers.insert()


class NotificationQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: NotificationHandlerRecord) -> None:
        await self._insert(_INSERT, values_of(rec), f"notification handler {rec.name!r}")

    async def get(self, handler_id: str) -> NotificationHandlerRecord | None:
        return await self._one(NotificationHandlerRecord,
                               select(t.notification_handlers).where(_c.id == handler_id), "notification handler")

    async def by_name(self, name: str) -> NotificationHandlerRecord | None:
        return await self._one(NotificationHandlerRecord,
                               select(t.notification_handlers).where(_c.name == name), "notification handler")

    async def list(self, *, enabled_only: bool = False) -> Handlers:
        conds = [_c.enabled.is_(True)] if enabled_only else []
        stmt = select(t.notification_handlers).where(*conds).order_by(_c.created_at, _c.id)
        return await self._all(NotificationHandlerRecord, stmt, "notification handlers")

    async def delete(self, handler_id: str) -> bool:
        result = await self._conn.execute(t.notification_handlers.delete().where(_c.id == handler_id))
        return bool(result.rowcount)

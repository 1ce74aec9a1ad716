"""The ``requests`` table: certificate requests held for an operator or an upstream CA."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ...errors import NotFound
from .. import schema as t
from ..records import RequestRecord
from .base import TableQueries, checked_fields, normalize_serial, values_of

RequestRecords = list[RequestRecord]

_c = t.requests.c
_INSERT = t.requests.insert()


class RequestQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: RequestRecord) -> None:
        values = values_of(rec)
        if rec.serial is not None:
            values["serial"] = normalize_serial(rec.serial)
        await self._insert(_INSERT, values, f"request {rec.id!r}")

    async def get(self, request_id: str) -> RequestRecord | None:
        return await self._one(RequestRecord, select(t.requests).where(_c.id == request_id), "request")

    async def list(self, status: str | None = None, ca_id: str | None = None) -> RequestRecords:
        """Oldest first: the order an operator should work through them."""
        conds = []
        if status is not None:
            conds.append(_c.status == status)
        if ca_id is not None:
            conds.append(_c.ca_id == ca_id)
        stmt = select(t.requests).where(*conds).order_by(_c.created_at, _c.id)
        return await self._all(RequestRecord, stmt, "requests")

    async def update(self, request_id: str, *, expect: str, **fields: Any) -> bool:
        """Compare-and-set on status: False if the request is no longer in ``expect``
        (NotFound if there is no such request)."""
        values = checked_fields(RequestRecord, fields, frozenset({"id"}))
        if values.get("serial") is not None:
            values["serial"] = normalize_serial(values["serial"])
        what = f"request {request_id!r}"
        current = (_c.id == request_id) & (_c.status == expect)
        if values:
            if await self._update(t.requests, current, values, what):
                return True
        elif await self._exists(t.requests, current, what):
            return True
        if not await self._exists(t.requests, _c.id == request_id, what):
            raise NotFound(f"{what} not found")
        return False

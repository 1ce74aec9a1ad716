"""The ``cas`` table: every CA the gateway knows, its key (encrypted) and CRL state."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ...errors import NotFound
from .. import schema as t
from ..errors import translated
from ..records import CARecord
from .base import TableQueries, checked_fields, values_of

CARecords = list[CARecord]

_c = t.cas.c
_INSERT = t.cas.insert()


class CAQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: CARecord) -> None:
        await self._insert(_INSERT, values_of(rec), f"CA {rec.id!r}")

    async def update(self, ca_id: str, **fields: Any) -> None:
        """Change CA columns; ``crl_number`` is better advanced with :meth:`next_crl_number`."""
        values = checked_fields(CARecord, fields, frozenset({"id"}))
        await self._update_or_missing(t.cas, ca_id, values, f"CA {ca_id!r}")

    async def get(self, ca_id: str) -> CARecord | None:
        return await self._one(CARecord, select(t.cas).where(_c.id == ca_id), "CA")

    async def lock(self, ca_id: str) -> CARecord:
        """The CA's row, locked until this transaction ends (``SELECT ... FOR UPDATE`` on
        PostgreSQL; SQLite ignores the clause, its write transaction already excludes
        other writers), so work on the CA's CRL is serialised across processes."""
        record = await self._one(CARecord, select(t.cas).where(_c.id == ca_id).with_for_update(), "CA")
        if record is None:
            raise NotFound(f"CA {ca_id!r} not found")
        return record

    async def list(self) -> CARecords:
        """Oldest first."""
        return await self._all(CARecord, select(t.cas).order_by(_c.created_at, _c.id), "CAs")

    async def next_crl_number(self, ca_id: str) -> int:
        """Increment and return the CA's CRL number in one statement (row-locked)."""
        stmt = t.cas.update().where(_c.id == ca_id).values(crl_number=_c.crl_number + 1).returning(_c.crl_number)
        with translated(f"CA {ca_id!r}"):
            number = (await self._conn.execute(stmt)).scalar_one_or_none()
        if number is None:
            raise NotFound(f"CA {ca_id!r} not found")
        return int(number)

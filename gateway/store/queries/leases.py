"""The ``job_leases`` table: one row per cluster-wide job, claimed by compare-and-set."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from .. import schema as t
from ..errors import translated
from .base import TableQueries

_c = t.job_leases.c


class LeaseQueries(TableQueries):
    __slots__ = ()

    async def claim(self, name: str, holder: str, now: dt.datetime, until: dt.datetime) -> bool:
        """Hold ``name`` until ``until`` if it is free, run out, or already ``holder``'s.
        Two processes creating the first row at once: one insert fails (a Conflict the
        caller takes as "not claimed"; on PostgreSQL the transaction is then spent)."""
        stmt = (t.job_leases.update()
                .where((_c.name == name) & ((_c.holder == holder) | (_c.until < now)))
                .values(holder=holder, until=until))
        with translated(f"{name} lease"):
            if (await self._conn.execute(stmt)).rowcount == 1:
                return True
            exists = (await self._conn.execute(select(_c.name).where(_c.name == name))).first()
            if exists is not None:
                return False
            await self._conn.execute(t.job_leases.insert().values(name=name, holder=holder, until=until))
        return True

    async def release(self, name: str, holder: str) -> None:
        stmt = t.job_leases.delete().where((_c.name == name) & (_c.holder == holder))
        with translated(f"{name} lease"):
            await self._conn.execute(stmt)

    async def holder(self, name: str, now: dt.datetime) -> str | None:
        """Who holds ``name`` now (None if nobody, or the lease has run out)."""
        with translated(f"{name} lease"):
            row = (await self._conn.execute(
                select(_c.holder).where((_c.name == name) & (_c.until >= now)))).first()
        return None if row is None else str(row[0])

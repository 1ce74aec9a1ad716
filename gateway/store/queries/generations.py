"""The ``generations`` table: counters bumped in the transaction of each write they
guard, so any process can tell with one read that its caches are stale."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from .. import schema as t
from ..direct_reads import PreparedRead
from ..errors import translated
from .base import TableQueries

CONFIG = "config"
"""Protocol configurations: bumped by every write of :class:`ConfigQueries`."""

_c = t.generations.c
# read at the start of every request that caches configurations
_GET = select(_c.value).where(_c.name == bindparam("name"))
PREPARED_GET = PreparedRead(_GET)
_BUMP = t.generations.update().where(_c.name == bindparam("counter")).values(value=_c.value + 1)


class GenerationQueries(TableQueries):
    __slots__ = ()

    async def bump(self, name: str = CONFIG) -> None:
        """Advance the counter in this transaction (visible to others when it commits)."""
        with translated(f"{name} generation"):
            await self._conn.execute(_BUMP, {"counter": name})

    async def advance(self, name: str, old: int, new: int) -> bool:
        """Compare-and-set a cursor kept as a counter: False if another process moved it."""
        stmt = t.generations.update().where((_c.name == name) & (_c.value == old)).values(value=new)
        with translated(f"{name} generation"):
            return (await self._conn.execute(stmt)).rowcount == 1

    async def get(self, name: str = CONFIG) -> int:
        with translated(f"{name} generation"):
            value = (await self._conn.execute(_GET, {"name": name})).scalar()
        return int(value or 0)

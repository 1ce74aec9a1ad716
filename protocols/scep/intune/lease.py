"""Leases in ``scep_leases``: one holder per job across every worker and replica.

A holder takes a lease by inserting its row, or by a compare-and-set that succeeds only
when the row has expired or is already its own; it renews the lease each time it runs
the job. A holder that dies stops renewing and another takes over once the lease
expires. No clock is shared but the store's rows: holders compare against their own
clocks, so leases are much longer than any plausible clock skew.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.door import ProtocolTables
from gateway.errors import Conflict

from .. import schema as t


def new_holder() -> str:
    """A holder id for one process (random: process ids repeat across replicas)."""
    return "holder-" + secrets.token_hex(8)


async def take_lease(tables: ProtocolTables, name: str, holder: str, *, now: dt.datetime,
                     ttl: dt.timedelta) -> bool:
    """Take or renew ``name`` for ``holder`` until ``now + ttl``; False while another holds it."""
    expires = now + ttl
    async with tables.read() as conn:
        row = (await conn.execute(select(t.leases.c.holder).where(t.leases.c.name == name))).first()
    try:
        async with tables.transaction() as conn:
            if row is None:
                await conn.execute(t.leases.insert().values(name=name, holder=holder, expires_at=expires))
                return True
            result = await conn.execute(
                update(t.leases).where(t.leases.c.name == name,
                                       or_(t.leases.c.expires_at <= now, t.leases.c.holder == holder))
                .values(holder=holder, expires_at=expires))
            return result.rowcount == 1
    except (IntegrityError, Conflict):  # another holder inserted the row meanwhile
        return False


async def release_lease(tables: ProtocolTables, name: str, holder: str, *, now: dt.datetime) -> None:
    """Give the lease up (at shutdown), so another holder need not wait for its expiry."""
    async with tables.transaction() as conn:
        await conn.execute(update(t.leases).where(t.leases.c.name == name, t.leases.c.holder == holder)
                           .values(expires_at=now))

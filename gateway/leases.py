"""Leases: one holder per cluster-wide job across every worker and replica.

A holder takes a lease by a compare-and-set on the job's row in ``job_leases`` that
succeeds only when the row has run out or is already its own (or by inserting the row),
and renews it each time it runs the job. A holder that dies stops renewing and another
takes over once the lease runs out. No clock is shared but the store's rows: holders
compare against their own clocks, so leases are much longer than any plausible skew.
"""

from __future__ import annotations

import datetime as dt
import secrets

from .errors import Conflict
from .store import Store


def new_holder() -> str:
    """A holder id for one process (random: process ids repeat across replicas)."""
    return "holder-" + secrets.token_hex(8)


async def take_lease(store: Store, name: str, holder: str, *, now: dt.datetime, ttl: dt.timedelta) -> bool:
    """Take or renew ``name`` for ``holder`` until ``now + ttl``; False while another holds it."""
    try:
        async with store.transaction() as q:
            return await q.leases.claim(name, holder, now, now + ttl)
    except Conflict:  # another holder inserted the first row meanwhile
        return False


async def release_lease(store: Store, name: str, holder: str) -> None:
    """Give the lease up (at shutdown), so another holder need not wait for it to run out."""
    async with store.transaction() as q:
        await q.leases.release(name, holder)

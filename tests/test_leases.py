"""The lease that keeps a cluster-wide job to one process (``job_leases``, compare-and-set
on expiry), on SQLite and PostgreSQL; the jobs that take it: upstream polling, CRL
refresh, and a protocol's own (the Intune revocation sync, through ``door.take_lease``)."""

from __future__ import annotations

import asyncio
import datetime as dt

from gateway.leases import release_lease, take_lease
from gateway.store import Store

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=5)


async def test_one_of_many_concurrent_holders_gets_the_lease(store: Store) -> None:
    got = await asyncio.gather(*(take_lease(store, "job", f"h{i}", now=NOW, ttl=TTL) for i in range(8)))
    assert sum(got) == 1
    async with store.read() as q:
        assert await q.leases.holder("job", NOW) == f"h{got.index(True)}"


async def test_the_holder_renews_others_wait_for_expiry(store: Store) -> None:
    assert await take_lease(store, "job", "a", now=NOW, ttl=TTL)
    assert not await take_lease(store, "job", "b", now=NOW + dt.timedelta(minutes=1), ttl=TTL)
    assert await take_lease(store, "job", "a", now=NOW + dt.timedelta(minutes=4), ttl=TTL)  # renewed to 12:09
    assert not await take_lease(store, "job", "b", now=NOW + dt.timedelta(minutes=8), ttl=TTL)
    assert await take_lease(store, "job", "b", now=NOW + dt.timedelta(minutes=9, seconds=1), ttl=TTL)  # a died
    assert not await take_lease(store, "job", "a", now=NOW + dt.timedelta(minutes=10), ttl=TTL)
    assert await take_lease(store, "other-job", "a", now=NOW + dt.timedelta(minutes=10), ttl=TTL)


async def test_a_released_lease_is_free_at_once(store: Store) -> None:
    assert await take_lease(store, "job", "a", now=NOW, ttl=TTL)
    await release_lease(store, "job", "b")  # not b's: nothing happens
    assert not await take_lease(store, "job", "b", now=NOW, ttl=TTL)
    await release_lease(store, "job", "a")
    assert await take_lease(store, "job", "b", now=NOW, ttl=TTL)

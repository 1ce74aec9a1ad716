"""The lease that keeps the Intune revocation sync to one process of the cluster
(``scep_leases``, compare-and-set on expiry), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from gateway.door import ProtocolTables
from gateway.store import Store
from protocols.scep import schema
from protocols.scep.intune.lease import release_lease, take_lease

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=5)


def tables(store: Store) -> ProtocolTables:
    return ProtocolTables(SimpleNamespace(store=store, config=SimpleNamespace(store_has_replicas=True)))  # type: ignore[arg-type]


async def test_one_of_many_concurrent_holders_gets_the_lease(store: Store) -> None:
    t = tables(store)
    got = await asyncio.gather(*(take_lease(t, "job", f"h{i}", now=NOW, ttl=TTL) for i in range(8)))
    assert sum(got) == 1


async def test_the_holder_renews_others_wait_for_expiry(store: Store) -> None:
    t = tables(store)
    assert await take_lease(t, "job", "a", now=NOW, ttl=TTL)
    assert not await take_lease(t, "job", "b", now=NOW + dt.timedelta(minutes=1), ttl=TTL)
    assert await take_lease(t, "job", "a", now=NOW + dt.timedelta(minutes=4), ttl=TTL)  # renewed to 12:09
    assert not await take_lease(t, "job", "b", now=NOW + dt.timedelta(minutes=8), ttl=TTL)
    assert await take_lease(t, "job", "b", now=NOW + dt.timedelta(minutes=9), ttl=TTL)  # a died: taken over
    assert not await take_lease(t, "job", "a", now=NOW + dt.timedelta(minutes=10), ttl=TTL)
    assert await take_lease(t, "other-job", "a", now=NOW + dt.timedelta(minutes=10), ttl=TTL)


async def test_a_released_lease_is_free_at_once(store: Store) -> None:
    t = tables(store)
    assert await take_lease(t, "job", "a", now=NOW, ttl=TTL)
    await release_lease(t, "job", "b", now=NOW)  # not b's: nothing happens
    assert not await take_lease(t, "job", "b", now=NOW, ttl=TTL)
    await release_lease(t, "job", "a", now=NOW)
    assert await take_lease(t, "job", "b", now=NOW, ttl=TTL)


async def test_migration_scep_0005_creates_the_lease_table_as_declared(store: Store) -> None:
    only = MetaData(naming_convention=schema.metadata.naming_convention)
    schema.leases.to_metadata(only)

    def inspect(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, type_, parent: type_ != "table" or name == "scep_leases",
        })
        return set(context.get_current_heads()), compare_metadata(context, only)

    async with store.engine.connect() as conn:
        heads, diffs = await conn.run_sync(inspect)
    assert "scep_0006" in heads  # the lease table from scep_0005, unchanged since
    assert diffs == []

"""The SCEP tables on SQLite and PostgreSQL: migration at head, compare-and-set use of
one-time challenges, RA roles, secrets and transactions, and the generation that tells
workers their caches are stale."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.door import ProtocolTables
from gateway.errors import Conflict
from gateway.store import Store
from protocols.scep import schema
from protocols.scep.repository import (
    ChallengeRecord,
    RaRecord,
    ScepRepository,
    SecretRecord,
    TransactionRecord,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def tables(store: Store) -> ProtocolTables:
    """The door's handle on the adapter's tables, over a bare Store (no gateway here)."""
    return ProtocolTables(SimpleNamespace(store=store, config=SimpleNamespace(store_has_replicas=True)))  # type: ignore[arg-type]


async def test_migration_creates_exactly_the_schema(store: Store) -> None:
    tables = set(schema.metadata.tables)

    def inspect(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, type_, parent: type_ != "table" or name in tables,
        })
        return set(context.get_current_heads()), compare_metadata(context, schema.metadata)

    async with store.engine.connect() as conn:
        heads, diffs = await conn.run_sync(inspect)
    assert "scep_0007" in heads
    assert diffs == []


def challenge(sha: str, **kw: object) -> ChallengeRecord:
    values = {"challenge_sha256": sha, "config_id": "scep", "source": "api", "expires_at": NOW + dt.timedelta(hours=1),
              "created_at": NOW}
    values.update(kw)
    return ChallengeRecord(**values)  # type: ignore[arg-type]


async def test_challenge_is_used_exactly_once_under_concurrency(store: Store) -> None:
    repo = ScepRepository(tables(store))
    await repo.add_challenge(challenge("a" * 64, attributes={"udid": "x"}), limit=10, now=NOW)
    results = await asyncio.gather(*[
        repo.use_challenge("scep", "a" * 64, now=NOW, used_by=f"tx{i}") for i in range(8)
    ])
    assert results.count(True) == 1
    rec = await repo.challenge("scep", "a" * 64)
    assert rec is not None and rec.used_at == NOW and rec.attributes == {"udid": "x"}
    # released by the transaction that used it, usable again
    await repo.release_challenge("scep", "a" * 64, rec.used_by or "")
    assert await repo.use_challenge("scep", "a" * 64, now=NOW, used_by="again")
    # expired ones cannot be used, other configurations do not see it
    await repo.add_challenge(challenge("b" * 64, expires_at=NOW - dt.timedelta(seconds=1)), limit=10,
                             now=NOW - dt.timedelta(hours=2))
    assert not await repo.use_challenge("scep", "b" * 64, now=NOW, used_by="late")
    assert await repo.challenge("other", "a" * 64) is None


async def test_outstanding_challenge_limit_and_purge(store: Store) -> None:
    repo = ScepRepository(tables(store))
    await repo.add_challenge(challenge("1" * 64), limit=2, now=NOW)
    await repo.add_challenge(challenge("2" * 64), limit=2, now=NOW)
    with pytest.raises(Conflict):
        await repo.add_challenge(challenge("3" * 64), limit=2, now=NOW)
    assert len(await repo.list_challenges("scep", NOW)) == 2
    later = NOW + dt.timedelta(days=2)  # both expired more than a day ago: purged on the next issue
    await repo.add_challenge(challenge("4" * 64, expires_at=later + dt.timedelta(hours=1)), limit=2, now=later)
    assert await repo.challenge("scep", "1" * 64) is None
    assert [c.challenge_sha256 for c in await repo.list_challenges("scep", later)] == ["4" * 64]


def ra(rid: str, role: str, created: dt.datetime) -> RaRecord:
    return RaRecord(id=rid, config_id="scep", role=role, certificate_pem="c", chain_pem="", key_pem_encrypted="k",
                    not_after=created + dt.timedelta(days=365), created_at=created)


async def test_ra_roles(store: Store) -> None:
    repo = ScepRepository(tables(store))
    await repo.add_ra(ra("r1", "current", NOW))
    await repo.add_ra(ra("r2", "current", NOW + dt.timedelta(seconds=1)))
    assert {(r.id, r.role) for r in await repo.ra_certificates("scep")} == {("r1", "retired"), ("r2", "current")}
    await repo.add_ra(ra("n1", "next", NOW + dt.timedelta(seconds=2)))
    await repo.add_ra(ra("n2", "next", NOW + dt.timedelta(seconds=3)))  # replaces n1
    assert await repo.promote_next_ra("scep")
    roles = {r.id: r.role for r in await repo.ra_certificates("scep")}
    assert roles == {"r1": "retired", "r2": "retired", "n2": "current"}
    assert not await repo.promote_next_ra("scep")
    assert await repo.drop_expired_ra("scep", NOW + dt.timedelta(days=400)) == 2


async def test_secrets_and_transactions(store: Store) -> None:
    repo = ScepRepository(tables(store))
    await repo.set_secret(SecretRecord("scep", "static_challenge", "static", "h1", NOW))
    await repo.set_secret(SecretRecord("scep", "static_challenge", "static", "h2", NOW))
    assert [s.secret_hash for s in await repo.secrets("scep", "static_challenge")] == ["h2"]
    assert await repo.delete_secret("scep", "static_challenge", "static")
    assert not await repo.delete_secret("scep", "static_challenge", "static")
    tx = TransactionRecord("scep", "T" * 200, "19", "s" * 64, "c" * 64, request_id="scep-1", created_at=NOW)
    await repo.save_transaction(tx)
    await repo.set_transaction_serial("scep", "T" * 200, "abc")
    got = await repo.transaction("scep", "T" * 200)
    assert got is not None and got.serial == "abc" and got.request_id == "scep-1"
    await repo.save_transaction(TransactionRecord("scep", "T" * 200, "17", "s" * 64, "d" * 64, created_at=NOW))
    replaced = await repo.transaction("scep", "T" * 200)
    assert replaced is not None and replaced.message_type == "17" and replaced.serial is None


async def test_cached_writes_bump_the_generation_seen_by_another_worker(store_factory) -> None:  # type: ignore[no-untyped-def]
    ours = ScepRepository(tables(await store_factory()))
    theirs = ScepRepository(tables(await store_factory()))  # another process on the same store
    start = await ours.generation()
    await theirs.set_secret(SecretRecord("scep", "static_challenge", "static", "h1", NOW))
    assert await ours.generation() == start + 1
    assert [s.secret_hash for s in await ours.cached_secrets("scep", "static_challenge")] == ["h1"]
    await theirs.set_secret(SecretRecord("scep", "static_challenge", "static", "h2", NOW))
    # the cache answers until this worker reads the generation again (once per request)
    assert [s.secret_hash for s in await ours.cached_secrets("scep", "static_challenge")] == ["h1"]
    assert await ours.generation() == start + 2
    assert [s.secret_hash for s in await ours.cached_secrets("scep", "static_challenge")] == ["h2"]
    await theirs.add_ra(ra("r1", "current", NOW))
    await theirs.promote_next_ra("scep")  # nothing to promote: no write, no bump
    assert await ours.generation() == start + 3
    # what workers do not cache leaves it alone
    await theirs.add_challenge(challenge("c" * 64), limit=10, now=NOW)
    await theirs.save_transaction(TransactionRecord("scep", "T", "19", "s" * 64, "c" * 64, created_at=NOW))
    assert await ours.generation() == start + 3

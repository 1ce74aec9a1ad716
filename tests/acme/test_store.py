"""The ACME tables on SQLite and PostgreSQL: atomic writes, compare-and-set, single-use nonces.

The store is reached as the adapter reaches it, through the ACME door of a gateway
opened on each test's database (its own tables, and end entities registered by the
door on the account's transaction).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config import PASSPHRASE_ENV, load_config
from gateway.door import Door, utcnow
from gateway.errors import Conflict
from gateway.store import Store
from protocols.acme import schema
from protocols.acme.identifiers import Identifier
from protocols.acme.problems import Problem
from protocols.acme.records import Account, Authorization, Challenge, EabKey, Order
from protocols.acme.settings import RateLimit
from protocols.acme.store import AcmeStore, InAccountTransaction, NonceReused

NOW = utcnow()

DoorFactory = Callable[[], Awaitable[Door]]


@pytest.fixture
async def doors(store_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DoorFactory]:
    """ACME doors of gateways opened on one fresh database (one gateway per call: replicas)."""
    from gateway.runtime import Gateway

    monkeypatch.setenv(PASSPHRASE_ENV, "acme store tests")

    async def open_door() -> Door:
        gw = await Gateway.open(load_config(tmp_path / "data"), store=await store_factory())
        return gw.door("acme")

    yield open_door


@pytest.fixture
async def door(doors: DoorFactory) -> Door:
    return await doors()


def tables(door: Door) -> AcmeStore:
    return AcmeStore(door.tables, door.clock)


def account(door: Door, config: str = "acme", eab_kid: str | None = None) -> tuple[Account, InAccountTransaction]:
    """An account and the registration of its end entity (what newAccount passes the store)."""
    aid = uuid.uuid4().hex
    acct = Account(id=aid, config_id=config, thumbprint=uuid.uuid4().hex, jwk={"kty": "EC"},
                   entity_id=uuid.uuid4().hex, eab_kid=eab_kid, created_at=NOW)

    async def register(conn: AsyncConnection) -> None:
        await door.register_entity(conn, f"acme:{aid}", entity_id=acct.entity_id, kind="account",
                                   config_id=config)

    return acct, register


def authz(acct: Account, name: str = "a.example.com", expires: dt.datetime | None = None,
          status: str = "pending") -> Authorization:
    return Authorization(id=uuid.uuid4().hex, config_id=acct.config_id, account_id=acct.id,
                         identifier=Identifier("dns", name), wildcard=False,
                         expires=expires or NOW + dt.timedelta(days=1),
                         challenges=[Challenge("http-01", "tok"), Challenge("dns-01", "tok2")], status=status,
                         created_at=NOW)


def order(acct: Account, authzs: list[Authorization], status: str = "pending",
          expires: dt.datetime | None = None, replaces: str | None = None) -> Order:
    return Order(id=uuid.uuid4().hex, config_id=acct.config_id, account_id=acct.id,
                 expires=expires or NOW + dt.timedelta(days=1),
                 identifiers=[a.identifier for a in authzs], authz_ids=[a.id for a in authzs],
                 profile="tls-server", status=status, replaces=replaces, created_at=NOW, updated_at=NOW)


async def test_migration_matches_schema(store: Store) -> None:
    names = set(schema.metadata.tables)

    def inspect(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={
            "compare_type": True,
            "include_name": lambda name, type_, parent: type_ != "table" or name in names,
        })
        return compare_metadata(context, schema.metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(inspect) == []


async def test_account_and_end_entity_are_written_together(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    loaded = await acme.account_by_thumbprint("acme", acct.thumbprint)
    assert loaded is not None and loaded.id == acct.id
    registered = await door.entity(loaded.entity_id)
    assert registered is not None and registered.name == f"acme:{acct.id}" and registered.status == "active"
    # the entity's state is the core's, read through the door (the front end refuses inactive ones)
    await door.set_entity_status(acct.entity_id, "inactive", actor="test")
    reloaded = await acme.get_account("acme", acct.id)
    assert reloaded is not None and (await door.entity(reloaded.entity_id)).status == "inactive"  # type: ignore[union-attr]
    assert await acme.get_account("other-config", acct.id) is None


async def test_a_used_eab_key_rolls_the_whole_account_back(door: Door) -> None:
    acme = tables(door)
    await acme.insert_eab(EabKey(kid="kid-1", config_id="acme", hmac_key_encrypted="v1.x", created_at=NOW))
    first, e1 = account(door, eab_kid="kid-1")
    await acme.create_account(first, register_entity=e1, limit=None, now=NOW)
    second, e2 = account(door, eab_kid="kid-1")
    with pytest.raises(Conflict):
        await acme.create_account(second, register_entity=e2, limit=None, now=NOW)
    assert await acme.get_account("acme", second.id) is None
    assert await door.entity(second.entity_id) is None
    key = await acme.get_eab("acme", "kid-1")
    assert key is not None and key.account_id == first.id


async def test_nonces_are_single_use_across_replicas(doors: DoorFactory) -> None:
    door_a = await doors()
    a, b = tables(door_a), tables(await doors())
    await a.use_nonce("n1", NOW + dt.timedelta(hours=1))
    with pytest.raises(NonceReused):
        await b.use_nonce("n1", NOW + dt.timedelta(hours=1))
    acct, entity = account(door_a)
    await a.create_account(acct, register_entity=entity, limit=None, now=NOW)
    with pytest.raises(NonceReused):
        await b.use_nonce_and_load_account("n1", NOW, "acme", acct.id)
    loaded = await b.use_nonce_and_load_account("n2", NOW + dt.timedelta(hours=1), "acme", acct.id)
    assert loaded is not None and loaded.id == acct.id
    assert await a.use_nonce_and_load_account("n3", NOW + dt.timedelta(hours=1), "acme", "nobody") is None


async def test_rate_limits_count_in_windows_and_refusals_do_not_count(door: Door) -> None:
    acme = tables(door)
    limit = RateLimit(2, dt.timedelta(hours=1))
    made = []
    for _ in range(2):
        acct, entity = account(door)
        await acme.create_account(acct, register_entity=entity, limit=limit, now=NOW)
        made.append(acct)
    acct, entity = account(door)
    with pytest.raises(Problem) as info:
        await acme.create_account(acct, register_entity=entity, limit=limit, now=NOW)
    assert info.value.type == "rateLimited" and info.value.status == 429
    retry = int(info.value.headers["Retry-After"])
    assert 0 < retry <= 3601
    assert await acme.get_account("acme", acct.id) is None and await door.entity(acct.entity_id) is None
    # the next window starts from zero
    later = NOW + dt.timedelta(hours=1, seconds=1)
    await acme.create_account(acct, register_entity=entity, limit=limit, now=later)


async def test_replacing_a_certificate_is_claimed_once(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    a = authz(acct)
    first = order(acct, [a], replaces="cid")
    await acme.create_order(first, [a], limits=[], replaces_serial="abc", now=NOW)
    second = order(acct, [a], replaces="cid")
    with pytest.raises(Problem) as info:
        await acme.create_order(second, [], limits=[], replaces_serial="abc", now=NOW)
    assert info.value.type == "alreadyReplaced" and info.value.status == 409
    assert await acme.get_order("acme", second.id) is None
    # once the first replacement failed, another order may take over
    assert await acme.update_order(first.id, ("pending",), status="invalid")
    await acme.create_order(second, [], limits=[], replaces_serial="abc", now=NOW)
    assert await acme.get_order("acme", second.id) is not None


async def test_order_transitions_are_compare_and_set(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    a = authz(acct, status="valid")
    o = order(acct, [a], status="ready")
    await acme.create_order(o, [a], limits=[], replaces_serial=None, now=NOW)
    results = await asyncio.gather(*(acme.update_order(o.id, ("ready",), status="processing") for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    pair = await acme.get_order_with_authzs("acme", o.id)
    assert pair is not None and pair[0].status == "processing" and [x.id for x in pair[1]] == [a.id]


async def test_one_validation_attempt_at_a_time(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    a = authz(acct)
    await acme.create_authz(a)
    started = Challenge("http-01", "tok", "processing", started=NOW)
    assert await acme.start_attempt(a, started, stale_before=NOW - dt.timedelta(minutes=5))
    other = Challenge("dns-01", "tok2", "processing", started=NOW)
    assert not await acme.start_attempt(a, other, stale_before=NOW - dt.timedelta(minutes=5))
    current = await acme.get_authz("acme", a.id)
    assert current is not None and current.attempt == "http-01"
    # a stale attempt (its replica died) may be taken over
    assert await acme.start_attempt(current, other, stale_before=NOW + dt.timedelta(seconds=1))
    done = Challenge("dns-01", "tok2", "valid", validated=NOW)
    current = await acme.get_authz("acme", a.id)
    assert current is not None
    assert await acme.finish_attempt(current, "valid", done, NOW + dt.timedelta(days=30))
    assert not await acme.finish_attempt(current, "invalid", done, NOW)
    final = await acme.get_authz("acme", a.id)
    assert final is not None and final.status == "valid" and final.challenge("dns-01").status == "valid"  # type: ignore[union-attr]


async def test_orders_list_hides_invalid_and_expired(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    a = authz(acct)
    live = order(acct, [a])
    dead = order(acct, [a], status="invalid")
    expired = order(acct, [a], expires=NOW - dt.timedelta(seconds=1))
    done = order(acct, [a], status="valid", expires=NOW - dt.timedelta(days=1))
    for o in (live, dead, expired, done):
        await acme.create_order(o, [], limits=[], replaces_serial=None, now=NOW)
    assert set(await acme.list_orders(acct.id, NOW, 10, 0)) == {live.id, done.id}


async def test_sweep_removes_only_what_expired(door: Door) -> None:
    acme = tables(door)
    await acme.use_nonce("old", NOW - dt.timedelta(seconds=1))
    await acme.use_nonce("new", NOW + dt.timedelta(hours=1))
    assert await acme.sweep(NOW) == 1
    with pytest.raises(NonceReused):
        await acme.use_nonce("new", NOW + dt.timedelta(hours=1))
    await acme.use_nonce("old", NOW + dt.timedelta(hours=1))


async def test_authorization_queries(door: Door) -> None:
    acme = tables(door)
    acct, entity = account(door)
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    valid = authz(acct, "v.example.com", status="valid", expires=NOW + dt.timedelta(days=30))
    pending = authz(acct, "v.example.com")
    old = authz(acct, "v.example.com", status="valid", expires=NOW - dt.timedelta(seconds=1))
    other = authz(acct, "o.example.com", status="invalid")
    for a in (valid, pending, old, other):
        await acme.create_authz(a)
    ident = [Identifier("dns", "v.example.com")]
    found = await acme.reusable_authzs("acme", acct.id, ident, NOW, include_pending=True)
    assert [a.id for a in found] == [valid.id, pending.id]
    assert [a.id for a in await acme.reusable_authzs("acme", acct.id, ident, NOW, include_pending=False)] == [valid.id]
    assert await acme.valid_identifiers("acme", acct.id, NOW) == {Identifier("dns", "v.example.com")}
    assert await acme.deactivate_authz(valid.id)
    assert not await acme.deactivate_authz(other.id)
    assert await acme.valid_identifiers("acme", acct.id, NOW) == set()
    counts = await acme.counts()
    assert counts["accounts"] == 1 and counts["authorizations"] == 4


async def test_eab_keys_and_accounts_listing(door: Door) -> None:
    acme = tables(door)
    for n in range(3):
        await acme.insert_eab(EabKey(kid=f"kid-{n}", config_id="acme", hmac_key_encrypted="v1.x",
                                     identifiers=["*.example.com"] if n else None,
                                     created_at=NOW + dt.timedelta(seconds=n)))
    await acme.insert_eab(EabKey(kid="kid-elsewhere", config_id="other", hmac_key_encrypted="v1.x", created_at=NOW))
    assert [k.kid for k in await acme.list_eab("acme", 2, 1)] == ["kid-1", "kid-2"]
    acct, entity = account(door, eab_kid="kid-1")
    await acme.create_account(acct, register_entity=entity, limit=None, now=NOW)
    revoked = await acme.revoke_eab("acme", "kid-1")
    assert revoked is not None and revoked.account_id == acct.id
    assert (await acme.get_account("acme", acct.id)).status == "deactivated"  # type: ignore[union-attr]
    assert await acme.revoke_eab("acme", "kid-elsewhere") is None
    listed = await acme.list_accounts("acme", 10, 0)
    assert [a.id for a in listed] == [acct.id] and listed[0].eab_kid == "kid-1"

"""Upgrading a store whose EST users are still in the labels' configuration JSON.

Before revision ``est_0002`` a label's Basic users were ``credentials["basic"]`` of its
protocol configuration (``[{"username", "password": <scrypt hash>}]``, written by
``gateway est user add`` and ``gateway init``). The migration moves them into the
enrollment credentials, hash and all: the same passwords keep working, over HTTPS,
and the JSON no longer holds them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest
from alembic import command
from sqlalchemy import create_engine, delete, select

from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.credentials import Credentials
from gateway.door import Door
from gateway.errors import Unauthorized
from gateway.events import EventRecorder
from gateway.secrets import hash_secret
from gateway.store import Store
from gateway.store import schema as t
from gateway.store.engine import alembic_config
from gateway.store.records import CARecord, EventFilter, ProtocolConfigRecord
from protocols.est.auth import LOCKOUT

from .helpers import EstServer, b64, dev_credentials, make_csr

if TYPE_CHECKING:
    from tests.conftest import StoreFactory

BEFORE = "est_0001"
LEGACY_PASSWORD = "pw"  # the old CLI took any non-empty password from stdin
NOT_MOVABLE = [
    {"username": "x", "password": hash_secret("one-letter-name")},  # names are 2-64 characters now
    {"username": "plain", "password": "not-a-hash"},
]


def old_users(users: dict[str, str]) -> list[dict[str, str]]:
    """``credentials["basic"]`` as ``gateway est user add`` wrote it before the change."""
    return [{"username": u, "password": hash_secret(p)} for u, p in users.items()]


def downgrade_to_before(connection: Any) -> None:
    command.downgrade(alembic_config(connection), BEFORE)


async def configuration(door: Door, label: str) -> ProtocolConfigRecord:
    rec = await door.find_configuration(label)
    assert rec is not None
    return rec


async def stored_credentials(store: Store, config_id: str) -> dict[str, Any]:
    async with store.read() as q:
        rec = await q.configs.get(config_id)
    assert rec is not None
    return rec.credentials


# --- a data directory upgraded under a running gateway ---------------------------------

def make_legacy(data_dir: Path) -> None:
    """Put the data directory's store back before est_0002, with users stored the old way:
    the dev user of ``gateway init`` and a second label's users in configuration JSON."""
    dev = dev_credentials(data_dir)["est"]["est"]
    url = load_config(data_dir).store_url.replace("+aiosqlite", "")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            downgrade_to_before(conn)
            conn.execute(delete(t.enrollment_credentials).where(t.enrollment_credentials.c.protocol == "est"))
            conn.execute(t.protocol_configs.update().where(t.protocol_configs.c.id == "est").values(
                credentials={"basic": old_users({dev["username"]: dev["password"]})}))
            conn.execute(t.protocol_configs.insert().values(
                id="legacy", protocol="est", ca_id="issuing", profiles=["device"], default_profile="device",
                credentials={"basic": old_users({"old-timer": LEGACY_PASSWORD}) + NOT_MOVABLE},
                settings={"auth": "basic"}, enabled=True, created_at=dt.datetime.now(dt.timezone.utc),
            ))
    finally:
        engine.dispose()


@pytest.fixture
def prepare() -> list[Callable[[Path], None]]:
    return [make_legacy]


async def test_users_stored_the_old_way_authenticate_after_the_upgrade(est: EstServer) -> None:
    reply = await est.post("simpleenroll", b64(make_csr("old-timer-1")[0]), label="legacy",
                           auth=("old-timer", LEGACY_PASSWORD))
    assert reply.status == 200, reply.text
    dev = await est.post("simpleenroll", b64(make_csr("dev-1")[0]), auth=await est.dev_auth())
    assert dev.status == 200, dev.text
    for name in ("x", "plain"):  # what the rules refuse was not moved, and is not accepted
        assert (await est.post("simpleenroll", b64(make_csr(f"{name}-1")[0]), label="legacy",
                               auth=(name, "one-letter-name"))).status == 401

    # Out of the JSON (only what could not be moved is left there), into the credentials.
    door = est.gw.door("est")
    assert (await configuration(door, "legacy")).credentials == {"basic": NOT_MOVABLE}
    assert (await configuration(door, "est")).credentials == {}
    assert [u.username for u in await door.credentials.list("legacy")] == ["old-timer"]
    assert [u.username for u in await door.credentials.list("est")] == ["est"]
    moved = [e for e in await est.events(type="credential_create") if e.detail.get("imported")]
    assert sorted((e.protocol_config, e.detail["username"], e.detail["actor"]) for e in moved) == [
        ("est", "est", "migration:est_0002"), ("legacy", "old-timer", "migration:est_0002")]

    # Moved users are locked out like any other after repeated wrong passwords.
    for _ in range(LOCKOUT.max_failures or 0):
        assert (await est.post("simpleenroll", b64(make_csr("nope")[0]), label="legacy",
                               auth=("old-timer", "wrong"))).status == 401
    assert (await est.post("simpleenroll", b64(make_csr("old-timer-2")[0]), label="legacy",
                           auth=("old-timer", LEGACY_PASSWORD))).status == 401


# --- the migration itself, on SQLite and PostgreSQL -------------------------------------

async def test_migration_moves_users_once_and_downgrade_puts_them_back(store_factory: "StoreFactory") -> None:
    store = await store_factory()
    now = dt.datetime.now(dt.timezone.utc)
    async with store.transaction() as q:  # a CA row for the configurations to name
        await q.cas.insert(CARecord(
            id="root1", name="CA root1", kind="root", state="active", parent_id=None,
            certificate_pem="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n", chain_pem="",
            key_pem_encrypted="-----BEGIN ENCRYPTED PRIVATE KEY-----\n...", key_algorithm="EC-P256", created_at=now))
        for config_id, protocol in (("lab", "est"), ("empty", "est"), ("other", "scep")):
            await q.configs.insert(ProtocolConfigRecord(
                id=config_id, protocol=protocol, ca_id="root1", profiles=["device"], default_profile="device",
                credentials={}, settings={}, created_at=now))
    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade_to_before)
    # What the old CLI wrote: users (a duplicate name counted once, the first), other keys kept.
    first, second = hash_secret("first password"), hash_secret("second password")
    lab_doc = {"basic": [{"username": "alice", "password": first}, {"username": "alice", "password": second},
                         {"username": "bob", "password": hash_secret("b")}, *NOT_MOVABLE], "note": "kept"}
    scep_doc = {"basic": old_users({"carol": "c"})}
    async with store.transaction() as q:  # what the old `gateway est user add` wrote, the way it wrote it
        await q.configs.update("lab", credentials=lab_doc)
        await q.configs.update("empty", credentials={"basic": []})
        await q.configs.update("other", credentials=scep_doc)
    generation = await store.config_generation_now()

    upgraded = await store_factory()  # opens at the heads: est_0002 runs
    creds = Credentials(upgraded, EventRecorder(upgraded), FakeClock(), "est")
    assert (await creds.verify("lab", "alice", "first password")).username == "alice"
    assert (await creds.verify("lab", "bob", "b")).username == "bob"
    with pytest.raises(Unauthorized):
        await creds.verify("lab", "alice", "second password")
    assert [u.username for u in await creds.list("lab")] == ["alice", "bob"]
    assert await stored_credentials(upgraded, "lab") == {"basic": NOT_MOVABLE, "note": "kept"}
    assert await stored_credentials(upgraded, "empty") == {}
    assert await stored_credentials(upgraded, "other") == scep_doc  # EST's users only
    assert await upgraded.config_generation_now() > generation
    async with upgraded.read() as q:
        events = await q.events.list(EventFilter(type="credential_create"))
    assert sorted(e.detail["username"] for e in events) == ["alice", "bob"]
    assert all(e.detail["actor"] == "migration:est_0002" and e.protocol_config == "lab" for e in events)
    assert not any("scrypt$" in json.dumps(e.detail) for e in events)
    async with upgraded.read() as tx:
        rows = (await tx.connection.execute(select(t.enrollment_credentials))).all()
    assert sorted((r.protocol, r.protocol_config, r.username) for r in rows) == [
        ("est", "lab", "alice"), ("est", "lab", "bob")]
    assert next(r.secret_hash for r in rows if r.username == "alice") == first  # the very hash: no re-entry

    # Downgrade: the (enabled) users go back into the JSON with their hashes.
    await creds.disable("lab", (await creds.find_user("lab", "bob")).id)  # type: ignore[union-attr]
    async with upgraded.engine.begin() as conn:
        await conn.run_sync(downgrade_to_before)
    doc = await stored_credentials(upgraded, "lab")
    assert doc["basic"] == [{"username": "alice", "password": first}, *NOT_MOVABLE] and doc["note"] == "kept"
    assert [u.username for u in await creds.list("lab")] == ["bob"]  # disabled: not handed back
    again = await store_factory()
    creds = Credentials(again, EventRecorder(again), FakeClock(), "est")
    assert (await creds.verify("lab", "alice", "first password")).username == "alice"
    assert await stored_credentials(again, "lab") == {"basic": NOT_MOVABLE, "note": "kept"}

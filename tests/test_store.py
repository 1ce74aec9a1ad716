"""The store on both engines (fixtures in conftest.py: SQLite file and real PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import secrets

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.errors import BadRequest, ConfigError, Conflict, ErrorKind, NotFound
from gateway.store import SerialCollision, Store, StoreError, schema
from gateway.store.records import (
    ApiKeyRecord,
    CARecord,
    CertificateFilter,
    CertificateRecord,
    EndEntityRecord,
    EventFilter,
    EventRecord,
    ProtocolConfigRecord,
    RequestRecord,
    serial_hex,
    serial_int,
)
from gateway.store.engine import MIGRATIONS_DIR, alembic_config

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def make_ca(ca_id: str = "root1", **kw) -> CARecord:
    values = dict(
        id=ca_id, name=f"CA {ca_id}", kind="root", state="active", parent_id=None,
        certificate_pem="-----BEGIN CERTIFICATE-----\nMII...\n-----END CERTIFICATE-----\n",
        chain_pem="", key_pem_encrypted="-----BEGIN ENCRYPTED PRIVATE KEY-----\n...",
        key_algorithm="EC-P256", created_at=T0,
    )
    values.update(kw)
    return CARecord(**values)


def make_cert(serial: int | None = None, ca_id: str = "root1", **kw) -> CertificateRecord:
    serial = secrets.randbits(159) if serial is None else serial
    der = b"\x30\x82" + secrets.token_bytes(64)
    values = dict(
        serial=serial_hex(serial), ca_id=ca_id, profile="tls-server", subject="CN=host.example.com,O=Example",
        sans=["DNS:host.example.com", "IP:10.0.0.1"], not_before=T0, not_after=T0 + dt.timedelta(days=90),
        der=der, fingerprint_sha256=hashlib.sha256(der).hexdigest(), key_algorithm="EC-P256", created_at=T0,
    )
    values.update(kw)
    return CertificateRecord(**values)


def make_request(request_id: str = "req1", **kw) -> RequestRecord:
    values = dict(id=request_id, ca_id="root1", profile="tls-server", csr_pem="-----BEGIN CERTIFICATE REQUEST-----",
                  overrides={"validity_days": 30, "sans": ["DNS:a.example"]}, created_at=T0)
    values.update(kw)
    return RequestRecord(**values)


async def next_crl_number(store: Store, ca_id: str = "root1") -> int:
    """One CRL number in a transaction of its own (as each CRL issuance takes it)."""
    async with store.transaction() as q:
        return await q.cas.next_crl_number(ca_id)


@pytest.fixture
async def ca_store(store: Store) -> Store:
    """A store holding one root CA ``root1``."""
    async with store.transaction() as q:
        await q.cas.insert(make_ca())
    return store


# --- opening and migrations -----------------------------------------------------------


async def test_open_twice_is_idempotent(store_factory) -> None:
    first = await store_factory()
    async with first.transaction() as q:
        await q.cas.insert(make_ca())
    second = await store_factory()  # migrations already at head: must be a no-op
    async with second.read() as q:
        assert (await q.cas.get("root1")) == make_ca()
    await first.close()
    third = await store_factory()
    async with third.read() as q:
        assert [ca.id for ca in await q.cas.list()] == ["root1"]


async def test_database_is_at_head_and_matches_schema(store: Store) -> None:
    core_tables = set(schema.metadata.tables)

    def inspect(connection):
        script = ScriptDirectory.from_config(alembic_config(connection))
        context = MigrationContext.configure(
            connection, opts={"compare_type": True,
                              # protocol packages own their tables; compare the core's here
                              "include_name": lambda name, type_, parent: type_ != "table" or name in core_tables},
        )
        # what the recorded heads imply, their dependencies included: a protocol revision
        # that depends_on a core one stands for both in the version table
        applied = {r.revision for r in script.iterate_revisions(context.get_current_heads(), "base")}
        every = {r.revision for r in script.walk_revisions()}
        return every, applied, compare_metadata(context, schema.metadata)

    async with store.engine.connect() as conn:
        every, applied, diffs = await conn.run_sync(inspect)
    assert applied == every
    assert diffs == []


async def test_dialect_and_sqlite_pragmas(store: Store) -> None:
    assert store.dialect in ("sqlite", "postgresql")
    if store.dialect != "sqlite":
        return
    async with store.engine.connect() as conn:
        journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        foreign_keys = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy > 0


@pytest.mark.parametrize("url", [
    "mysql+aiomysql://u@h/db",
    "sqlite+aiosqlite://",
    "sqlite+aiosqlite:///:memory:",
    "not a url",
])
async def test_open_refuses_unsupported_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        await Store.open(url)


async def test_schema_option_is_postgresql_only(tmp_path) -> None:
    with pytest.raises(ConfigError):
        await Store.open(f"sqlite+aiosqlite:///{tmp_path}/x.db", schema="abc")


# --- round trips ----------------------------------------------------------------------


async def test_ca_round_trip_and_update(store: Store) -> None:
    root = make_ca(crl_der=b"\x30\x00", crl_this_update=at(1), crl_next_update=at(60 * 24))
    sub = make_ca("sub1", kind="intermediate", parent_id="root1", chain_pem="root pem",
                  ocsp_certificate_pem="ocsp", ocsp_key_pem_encrypted="okey", created_at=at(1))
    async with store.transaction() as q:
        await q.cas.insert(root)
        await q.cas.insert(sub)
    async with store.read() as q:
        assert await q.cas.get("root1") == root
        assert await q.cas.get("sub1") == sub
        assert await q.cas.get("nope") is None
        assert [ca.id for ca in await q.cas.list()] == ["root1", "sub1"]

    when = dt.datetime(2024, 3, 2, 14, 0, tzinfo=PLUS2)  # any zone in, UTC out
    async with store.transaction() as q:
        await q.cas.update("sub1", state="disabled", crl_der=b"\x01\x02", crl_this_update=when)
    async with store.read() as q:
        got = await q.cas.get("sub1")
    assert (got.state, got.crl_der) == ("disabled", b"\x01\x02")
    assert got.crl_this_update == when and got.crl_this_update.tzinfo == UTC
    assert got.crl_this_update.hour == 12

    with pytest.raises(NotFound):
        async with store.transaction() as q:
            await q.cas.update("nope", state="disabled")
    with pytest.raises(NotFound):
        async with store.transaction() as q:
            await q.cas.update("nope")
    with pytest.raises(StoreError):
        async with store.transaction() as q:
            await q.cas.update("sub1", no_such_field=1)


async def test_ca_foreign_keys_and_duplicates(store: Store) -> None:
    async with store.transaction() as q:
        await q.cas.insert(make_ca())
    with pytest.raises(Conflict) as err:
        async with store.transaction() as q:
            await q.cas.insert(make_ca())
    assert "already exists" in err.value.detail
    with pytest.raises(Conflict):
        async with store.transaction() as q:
            await q.cas.insert(make_ca("orphan", parent_id="missing"))
    with pytest.raises(Conflict) as err:
        async with store.transaction() as q:
            await q.certificates.insert(make_cert(ca_id="missing"))
    assert "CA" in err.value.detail and "INSERT" not in err.value.detail
    async with store.read() as q:
        assert await q.certificates.count() == 0


async def test_certificate_round_trip(ca_store: Store) -> None:
    cert = make_cert(
        not_before=dt.datetime(2024, 3, 1, 14, 0, tzinfo=PLUS2), entity_id="ee1", protocol_config="acme1",
        request_id="req9", sans=["DNS:ü.example", "email:a@b.example"],
    )
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)
    async with ca_store.read() as q:
        got = await q.certificates.get(cert.serial)
    assert got == cert
    for value in (got.not_before, got.not_after, got.created_at):
        assert value.tzinfo == UTC
    assert got.not_before == T0
    assert isinstance(got.der, bytes)
    async with ca_store.read() as q:
        assert await q.certificates.by_fingerprint(cert.fingerprint_sha256.upper()) == cert
        assert await q.certificates.get("abcdef") is None


async def test_159_bit_serial_round_trips(ca_store: Store) -> None:
    serial = (1 << 158) | secrets.randbits(158)
    assert serial.bit_length() == 159
    async with ca_store.transaction() as q:
        await q.certificates.insert(make_cert(serial))
    hex_serial = serial_hex(serial)
    assert len(hex_serial) == 40
    async with ca_store.read() as q:
        got = await q.certificates.get(hex_serial)
    assert got is not None and serial_int(got.serial) == serial
    # the same number spelled with a leading zero, in upper case, or with colons
    async with ca_store.read() as q:
        assert (await q.certificates.get("00" + hex_serial.upper())).serial == hex_serial
    colon = ":".join(hex_serial[i:i + 2] for i in range(0, 40, 2))
    async with ca_store.read() as q:
        assert (await q.certificates.get(colon)).serial == hex_serial


async def test_naive_datetime_is_refused(ca_store: Store) -> None:
    with pytest.raises(StoreError) as err:
        async with ca_store.transaction() as q:
            await q.certificates.insert(make_cert(not_after=dt.datetime(2030, 1, 1)))
    assert "naive" in err.value.detail
    async with ca_store.read() as q:
        assert await q.certificates.count() == 0


async def test_request_round_trip_and_compare_and_set(ca_store: Store) -> None:
    req = make_request(entity_id="ee1", protocol_config="scep1")
    async with ca_store.transaction() as q:
        await q.requests.insert(req)
        await q.requests.insert(make_request("req2", created_at=at(5), ca_id="root1"))
    async with ca_store.read() as q:
        assert await q.requests.get("req1") == req
        assert await q.requests.get("zzz") is None

    async with ca_store.transaction() as q:
        assert await q.requests.update("req1", expect="pending", status="approved", decided_by="alice",
                                       decided_at=at(10))
    # a second operator deciding the same request loses the race
    async with ca_store.transaction() as q:
        assert not await q.requests.update("req1", expect="pending", status="rejected", decided_by="bob")
    async with ca_store.read() as q:
        got = await q.requests.get("req1")
    assert (got.status, got.decided_by, got.decided_at) == ("approved", "alice", at(10))
    async with ca_store.transaction() as q:
        assert await q.requests.update("req1", expect="approved", status="issued", serial="0A1B")
    async with ca_store.read() as q:
        assert (await q.requests.get("req1")).serial == "a1b"
    with pytest.raises(NotFound):
        async with ca_store.transaction() as q:
            await q.requests.update("zzz", expect="pending", status="approved")

    async with ca_store.read() as q:
        assert [r.id for r in await q.requests.list()] == ["req1", "req2"]
        assert [r.id for r in await q.requests.list(status="pending")] == ["req2"]
        assert [r.id for r in await q.requests.list(ca_id="other")] == []


async def test_protocol_config_round_trip(ca_store: Store) -> None:
    cfg = ProtocolConfigRecord(
        id="acme-main", protocol="acme", ca_id="root1", profiles=["tls-server", "tls-client"],
        default_profile="tls-server", credentials={"eab": {"kid1": {"hmac_encrypted": "abc"}}},
        settings={"require_eab": True, "nested": {"list": [1, 2.5, None, "x"]}}, created_at=T0,
    )
    scep = dataclasses.replace(cfg, id="scep1", protocol="scep", enabled=False, settings={})
    async with ca_store.transaction() as q:
        await q.configs.insert(cfg)
        await q.configs.insert(scep)
    async with ca_store.read() as q:
        assert await q.configs.get("acme-main") == cfg
        assert await q.configs.get("scep1") == scep
        assert [c.id for c in await q.configs.list()] == ["acme-main", "scep1"]
        assert [c.id for c in await q.configs.list("scep")] == ["scep1"]

    async with ca_store.transaction() as q:
        await q.configs.update("scep1", enabled=True, settings={"challenge": "hashed"})
    async with ca_store.read() as q:
        got = await q.configs.get("scep1")
    assert got.enabled is True and got.settings == {"challenge": "hashed"}
    with pytest.raises(NotFound):
        async with ca_store.transaction() as q:
            await q.configs.update("none", enabled=True)
    with pytest.raises(Conflict):
        async with ca_store.transaction() as q:
            await q.configs.insert(cfg)

    async with ca_store.transaction() as q:
        assert await q.configs.delete("scep1") is True
        assert await q.configs.delete("scep1") is False
    async with ca_store.read() as q:
        assert await q.configs.get("scep1") is None


async def test_end_entities(store: Store) -> None:
    device = EndEntityRecord(id="e1", name="printer-1", kind="device", protocol_config="scep1",
                             attributes={"serial": "X1", "tags": ["floor2"]}, created_at=T0, updated_at=T0)
    user = EndEntityRecord(id="e2", name="alice", kind="user", created_at=at(1), updated_at=at(1))
    same_name = EndEntityRecord(id="e3", name="printer-1", kind="device", protocol_config="est1",
                                created_at=at(2), updated_at=at(2))
    for rec in (device, user, same_name):
        async with store.transaction() as q:
            await q.entities.insert(rec)
    async with store.read() as q:
        assert await q.entities.get("e1") == device
        assert await q.entities.find("printer-1", "scep1") == device
        assert await q.entities.find("printer-1", "est1") == same_name
        assert await q.entities.find("printer-1", None) is None
        assert await q.entities.find("alice", None) == user
        assert await q.entities.find("alice", "scep1") is None

    with pytest.raises(Conflict) as err:
        async with store.transaction() as q:
            await q.entities.insert(dataclasses.replace(device, id="e4"))
    assert "name" in err.value.detail

    async with store.transaction() as q:
        await q.entities.update("e1", status="inactive")
    async with store.read() as q:
        got = await q.entities.get("e1")
    assert got.status == "inactive" and got.updated_at > T0 and got.updated_at.tzinfo == UTC
    async with store.transaction() as q:
        await q.entities.update("e1", attributes={"x": 1}, updated_at=at(30))
    async with store.read() as q:
        got = await q.entities.get("e1")
    assert (got.attributes, got.updated_at) == ({"x": 1}, at(30))
    with pytest.raises(NotFound):
        async with store.transaction() as q:
            await q.entities.update("nope", status="inactive")

    async with store.read() as q:
        assert [e.id for e in await q.entities.list()] == ["e2", "e1", "e3"]  # by name
        assert [e.id for e in await q.entities.list(status="active")] == ["e2", "e3"]
        assert [e.id for e in await q.entities.list(protocol_config="scep1")] == ["e1"]
        assert [e.id for e in await q.entities.list(limit=1, offset=1)] == ["e1"]


async def test_api_keys(store: Store) -> None:
    digest = hashlib.sha256(b"secret-key").hexdigest()
    key = ApiKeyRecord(id="k1", name="ops", key_sha256=digest, created_at=T0)
    async with store.transaction() as q:
        await q.api_keys.insert(key)
        await q.api_keys.insert(ApiKeyRecord(id="k2", name="ci", key_sha256="ab" * 32, created_at=at(1),
                                             revoked=True))
    async with store.read() as q:
        assert await q.api_keys.by_hash(digest.upper()) == key
        assert await q.api_keys.by_hash("00" * 32) is None
        keys = await q.api_keys.list()
    assert [(k.id, k.revoked) for k in keys] == [("k1", False), ("k2", True)]
    with pytest.raises(Conflict):
        async with store.transaction() as q:
            await q.api_keys.insert(ApiKeyRecord(id="k3", name="dup", key_sha256=digest))


async def test_json_fields_round_trip(ca_store: Store) -> None:
    doc = {"unicode": "Grüße ✓", "nested": {"a": [1, {"b": None}], "t": True, "f": False},
           "float": 1.5, "empty": {}, "list": []}
    async with ca_store.transaction() as q:
        await q.requests.insert(make_request(overrides=doc))
    async with ca_store.read() as q:
        assert (await q.requests.get("req1")).overrides == doc
    async with ca_store.transaction() as q:
        event_id = await q.events.add(EventRecord(type="issue", status="success", detail=doc))
    async with ca_store.read() as q:
        [event] = await q.events.list()
    assert event.id == event_id and event.detail == doc
    cert = make_cert(sans=[])
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)
    async with ca_store.read() as q:
        assert (await q.certificates.get(cert.serial)).sans == []


# --- uniqueness -----------------------------------------------------------------------


async def test_duplicate_serial_raises_serial_collision(ca_store: Store) -> None:
    first = make_cert(subject="CN=first")
    async with ca_store.transaction() as q:
        await q.certificates.insert(first)
    clash = make_cert(serial_int(first.serial), subject="CN=second")  # new DER and fingerprint
    with pytest.raises(SerialCollision) as err:
        async with ca_store.transaction() as q:
            await q.certificates.insert(clash)
    assert err.value.kind is ErrorKind.CONFLICT
    assert first.serial in err.value.detail
    assert "INSERT" not in err.value.detail and "certificates" not in err.value.detail
    async with ca_store.read() as q:
        assert await q.certificates.get(first.serial) == first
        assert await q.certificates.count() == 1


async def test_duplicate_fingerprint_is_conflict_not_serial_collision(ca_store: Store) -> None:
    first = make_cert()
    async with ca_store.transaction() as q:
        await q.certificates.insert(first)
    with pytest.raises(Conflict) as err:
        async with ca_store.transaction() as q:
            await q.certificates.insert(make_cert(der=first.der, fingerprint_sha256=first.fingerprint_sha256))
    assert not isinstance(err.value, SerialCollision)
    assert "fingerprint" in err.value.detail


async def test_serial_collision_can_be_retried_inside_a_transaction(ca_store: Store) -> None:
    existing = make_cert()
    async with ca_store.transaction() as q:
        await q.certificates.insert(existing)
    retry = make_cert()
    async with ca_store.transaction() as q:
        await q.events.add(EventRecord(type="issue", status="pending"))
        with pytest.raises(SerialCollision):
            await q.certificates.insert(make_cert(serial_int(existing.serial)))
        await q.certificates.insert(retry)  # new serial, same transaction
    async with ca_store.read() as q:
        assert await q.certificates.get(retry.serial) == retry
        assert len(await q.events.list()) == 1


# --- transactions ---------------------------------------------------------------------


async def test_transaction_commits_all_writes(ca_store: Store) -> None:
    async with ca_store.transaction() as q:
        await q.requests.insert(make_request())
    cert = make_cert(request_id="req1")
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)
        assert await q.requests.update("req1", expect="pending", status="issued", serial=cert.serial)
        assert await q.certificates.get(cert.serial) == cert  # visible inside
    async with ca_store.read() as q:
        assert await q.certificates.get(cert.serial) == cert
        assert (await q.requests.get("req1")).status == "issued"


async def test_crash_mid_issuance_leaves_nothing(ca_store: Store) -> None:
    async with ca_store.transaction() as q:
        await q.requests.insert(make_request())
    cert = make_cert()

    class Crash(RuntimeError):
        pass

    with pytest.raises(Crash):
        async with ca_store.transaction() as q:
            await q.certificates.insert(cert)
            await q.requests.update("req1", expect="pending", status="issued", serial=cert.serial)
            await q.events.add(EventRecord(type="issue", status="success", serial=cert.serial))
            await q.cas.next_crl_number("root1")
            raise Crash("signer died")
    async with ca_store.read() as q:
        assert await q.certificates.get(cert.serial) is None
        assert await q.certificates.count() == 0
        assert (await q.requests.get("req1")).status == "pending"
        assert await q.events.list() == []
        assert (await q.cas.get("root1")).crl_number == 0


async def test_gateway_error_inside_transaction_rolls_back(ca_store: Store) -> None:
    cert = make_cert()
    with pytest.raises(NotFound):
        async with ca_store.transaction() as q:
            await q.certificates.insert(cert)
            await q.cas.update("missing", state="disabled")
    async with ca_store.read() as q:
        assert await q.certificates.get(cert.serial) is None


async def test_a_block_is_one_connection_and_the_store_has_no_table_methods(ca_store: Store) -> None:
    """Every table's queries in a block share its connection (the same unit of work as
    a protocol's own statements on ``q.connection``); the Store only opens blocks."""
    async with ca_store.transaction() as q:
        conn = q.connection
        assert all(getattr(q, table)._conn is conn for table in (
            "cas", "certificates", "requests", "configs", "entities", "events", "api_keys", "generations"))
        assert q.cas is q.cas  # built once per block
    public = {name for name in dir(Store) if not name.startswith("_")}
    assert public == {"open", "close", "dialect", "engine", "write_engine", "sync_engines", "read", "read_rows", "transaction",
                      "translated", "config_generation_now", "retrying"}


async def test_configuration_writes_bump_the_generation_in_their_transaction(store_factory) -> None:
    ours, theirs = await store_factory(), await store_factory()  # two processes on one database
    async with ours.transaction() as q:
        await q.cas.insert(make_ca())
    start = await theirs.config_generation_now()
    cfg = ProtocolConfigRecord(id="est1", protocol="est", ca_id="root1", profiles=["tls-client"],
                               default_profile="tls-client", credentials={}, settings={}, created_at=T0)
    async with ours.transaction() as q:
        await q.configs.insert(cfg)
        assert await q.generations.get() == start + 1  # this transaction sees its own bump
        assert await theirs.config_generation_now() == start  # nobody else does before commit
    assert await theirs.config_generation_now() == start + 1
    async with ours.transaction() as q:
        await q.configs.update("est1", settings={"auth": "basic"})
    async with ours.transaction() as q:
        assert await q.configs.delete("est1") is True
    assert await theirs.config_generation_now() == start + 3

    with pytest.raises(Conflict):
        async with ours.transaction() as q:
            await q.configs.insert(dataclasses.replace(cfg, id="scep1", protocol="scep"))
            await q.configs.insert(dataclasses.replace(cfg, id="scep1", protocol="scep"))
    assert await theirs.config_generation_now() == start + 3  # rolled back with the write
    async with ours.read() as q:
        assert await q.configs.get("scep1") is None


# --- certificate status ---------------------------------------------------------------


async def test_status_compare_and_set(ca_store: Store) -> None:
    cert = make_cert()
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)
        revoked = await q.certificates.update_status(
            cert.serial, expect={"valid", "hold"}, status="revoked", reason=1, revoked_at=at(5),
            invalidity_date=dt.datetime(2024, 3, 1, 13, 0, tzinfo=PLUS2))
    assert revoked is not None
    assert (revoked.status, revoked.revocation_reason, revoked.revoked_at) == ("revoked", 1, at(5))
    assert revoked.invalidity_date == at(-60) and revoked.invalidity_date.tzinfo == UTC
    async with ca_store.read() as q:
        assert revoked == await q.certificates.get(cert.serial)

    async with ca_store.transaction() as q:
        again = await q.certificates.update_status(
            cert.serial, expect={"valid", "hold"}, status="revoked", reason=4, revoked_at=at(9), invalidity_date=None)
    assert again is None
    async with ca_store.read() as q:
        unchanged = await q.certificates.get(cert.serial)
    assert (unchanged.revocation_reason, unchanged.revoked_at) == (1, at(5))

    with pytest.raises(NotFound):
        async with ca_store.transaction() as q:
            await q.certificates.update_status("dead", expect={"valid"}, status="revoked", reason=0,
                                               revoked_at=at(1), invalidity_date=None)


async def test_hold_and_release(ca_store: Store) -> None:
    cert = make_cert()
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)
        held = await q.certificates.update_status(cert.serial, expect={"valid"}, status="hold", reason=6,
                                                  revoked_at=at(1), invalidity_date=None)
    assert held.status == "hold"
    async with ca_store.read() as q:
        assert [c.serial for c in await q.certificates.revoked("root1")] == [cert.serial]
    async with ca_store.transaction() as q:
        released = await q.certificates.update_status(cert.serial, expect={"hold"}, status="valid", reason=None,
                                                      revoked_at=None, invalidity_date=None)
    assert (released.status, released.revocation_reason, released.revoked_at) == ("valid", None, None)
    async with ca_store.read() as q:
        assert await q.certificates.revoked("root1") == []
    # releasing a certificate that is not on hold is refused
    async with ca_store.transaction() as q:
        assert await q.certificates.update_status(cert.serial, expect={"hold"}, status="valid", reason=None,
                                                  revoked_at=None, invalidity_date=None) is None


async def test_concurrent_revocations_only_one_wins(ca_store: Store) -> None:
    cert = make_cert()
    async with ca_store.transaction() as q:
        await q.certificates.insert(cert)

    async def revoke(i: int) -> CertificateRecord | None:  # each in its own transaction
        async with ca_store.transaction() as q:
            return await q.certificates.update_status(cert.serial, expect={"valid"}, status="revoked", reason=i,
                                                      revoked_at=at(i), invalidity_date=None)

    results = await asyncio.gather(*[revoke(i) for i in range(8)])
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    async with ca_store.read() as q:
        assert await q.certificates.get(cert.serial) == winners[0]


async def test_revoked_certificates_for_crl(ca_store: Store) -> None:
    async with ca_store.transaction() as q:
        await q.cas.insert(make_ca("other"))
    live = make_cert(not_after=dt.datetime(2999, 1, 1, tzinfo=UTC))
    expired = make_cert(not_after=dt.datetime(2000, 1, 1, tzinfo=UTC))
    held = make_cert(not_after=dt.datetime(2999, 1, 1, tzinfo=UTC))
    valid = make_cert()
    foreign = make_cert(ca_id="other")
    for cert in (live, expired, held, valid, foreign):
        async with ca_store.transaction() as q:
            await q.certificates.insert(cert)
    for n, cert in enumerate((live, expired, foreign)):
        async with ca_store.transaction() as q:
            await q.certificates.update_status(cert.serial, expect={"valid"}, status="revoked", reason=1,
                                               revoked_at=at(n), invalidity_date=None)
    async with ca_store.transaction() as q:
        await q.certificates.update_status(held.serial, expect={"valid"}, status="hold", reason=6,
                                           revoked_at=at(10), invalidity_date=None)
    async with ca_store.read() as q:
        assert [c.serial for c in await q.certificates.revoked("root1")] == \
            [live.serial, expired.serial, held.serial]
        assert [c.serial for c in await q.certificates.revoked("root1", include_expired=False)] == \
            [live.serial, held.serial]


# --- CRL numbers ----------------------------------------------------------------------


async def test_concurrent_crl_numbers_are_distinct_and_increasing(ca_store: Store) -> None:
    numbers = await asyncio.gather(*[next_crl_number(ca_store) for _ in range(20)])
    assert sorted(numbers) == list(range(1, 21))
    assert await next_crl_number(ca_store) == 21
    async with ca_store.read() as q:
        assert (await q.cas.get("root1")).crl_number == 21
    with pytest.raises(NotFound):
        async with ca_store.transaction() as q:
            await q.cas.next_crl_number("missing")


async def test_crl_numbers_from_two_store_instances(store_factory) -> None:
    one = await store_factory()
    two = await store_factory()  # as two gateway processes sharing the database
    async with one.transaction() as q:
        await q.cas.insert(make_ca())
    numbers = await asyncio.gather(*[next_crl_number(one if i % 2 else two) for i in range(20)])
    assert sorted(numbers) == list(range(1, 21))


# --- listing --------------------------------------------------------------------------


async def test_certificate_filters_and_pagination(ca_store: Store) -> None:
    async with ca_store.transaction() as q:
        await q.cas.insert(make_ca("other"))
    certs = []
    for i in range(12):
        cert = make_cert(
            ca_id="other" if i % 4 == 3 else "root1",
            profile="tls-client" if i % 3 == 0 else "tls-server",
            subject=f"CN=host{i}.Example.com" if i != 5 else "CN=50%_off",
            entity_id="ee1" if i < 4 else None,
            protocol_config="acme1" if i % 2 else "est1",
            not_after=at(60 * 24 * (i + 1)),
            created_at=at(i),
        )
        async with ca_store.transaction() as q:
            await q.certificates.insert(cert)
        certs.append(cert)
    newest_first = [c.serial for c in reversed(certs)]

    async with ca_store.read() as q:
        assert [c.serial for c in await q.certificates.list()] == newest_first
        assert [c.serial for c in await q.certificates.list(limit=5)] == newest_first[:5]
        assert [c.serial for c in await q.certificates.list(limit=5, offset=10)] == newest_first[10:]
        assert await q.certificates.list(offset=12) == []
        assert await q.certificates.count() == 12

    def expect(pred) -> list[str]:
        return [c.serial for c in reversed(certs) if pred(c)]

    cases = [
        (CertificateFilter(ca_id="other"), lambda c: c.ca_id == "other"),
        (CertificateFilter(profile="tls-client"), lambda c: c.profile == "tls-client"),
        (CertificateFilter(entity_id="ee1"), lambda c: c.entity_id == "ee1"),
        (CertificateFilter(protocol_config="acme1"), lambda c: c.protocol_config == "acme1"),
        (CertificateFilter(subject_contains="EXAMPLE"), lambda c: "example" in c.subject.lower()),
        (CertificateFilter(subject_contains="0%_"), lambda c: "0%_" in c.subject),  # no wildcards
        (CertificateFilter(subject_contains="host1"), lambda c: "host1" in c.subject),
        (CertificateFilter(expires_before=at(60 * 24 * 4)), lambda c: c.not_after < at(60 * 24 * 4)),
        (CertificateFilter(issued_after=at(9)), lambda c: c.created_at >= at(9)),
        (CertificateFilter(ca_id="root1", profile="tls-server", protocol_config="est1"),
         lambda c: c.ca_id == "root1" and c.profile == "tls-server" and c.protocol_config == "est1"),
    ]
    for flt, pred in cases:
        wanted = expect(pred)
        assert wanted, flt  # every case must select something
        async with ca_store.read() as q:
            assert [c.serial for c in await q.certificates.list(flt)] == wanted, flt
            assert await q.certificates.count(flt) == len(wanted), flt

    async with ca_store.transaction() as q:
        await q.certificates.update_status(certs[0].serial, expect={"valid"}, status="revoked", reason=0,
                                           revoked_at=at(20), invalidity_date=None)
    async with ca_store.read() as q:
        revoked = await q.certificates.list(CertificateFilter(status="revoked"))
        assert await q.certificates.count(CertificateFilter(status="valid")) == 11
    assert [c.serial for c in revoked] == [certs[0].serial]


async def test_events_newest_first_and_filters(ca_store: Store) -> None:
    ids = []
    async with ca_store.transaction() as q:
        ids.append(await q.events.add(EventRecord(type="issue", status="success", entity_id="e1",
                                                  serial="0ABC", ca_id="root1", created_at=at(0))))
        ids.append(await q.events.add(EventRecord(type="revoke", status="failure", entity_id="e2",
                                                  protocol_config="est1", created_at=at(5))))
    # same timestamp as the next: insertion order decides
    async with ca_store.transaction() as q:
        ids.append(await q.events.add(EventRecord(type="issue", status="pending", request_id="r1",
                                                  created_at=at(10), detail={"n": 1})))
        ids.append(await q.events.add(EventRecord(type="approve", status="success", request_id="r1",
                                                  created_at=at(10), detail={"n": 2}, id=999)))
    assert ids == sorted(ids) and len(set(ids)) == 4 and 999 not in ids

    async with ca_store.read() as q:
        events = await q.events.list()
    assert [e.id for e in events] == list(reversed(ids))
    assert all(e.created_at.tzinfo == UTC for e in events)
    assert events[-1].serial == "abc"
    async with ca_store.read() as q:
        assert [e.id for e in await q.events.list(limit=2, offset=1)] == [ids[2], ids[1]]
        assert [e.id for e in await q.events.list(EventFilter(type="issue"))] == [ids[2], ids[0]]
        assert [e.id for e in await q.events.list(EventFilter(status="success"))] == [ids[3], ids[0]]
        assert [e.id for e in await q.events.list(EventFilter(entity_id="e2"))] == [ids[1]]
        assert [e.id for e in await q.events.list(EventFilter(protocol_config="est1"))] == [ids[1]]
        assert [e.id for e in await q.events.list(EventFilter(serial="abc"))] == [ids[0]]
        assert [e.id for e in await q.events.list(EventFilter(since=at(5)))] == [ids[3], ids[2], ids[1]]


async def test_bad_paging_and_serials_are_bad_requests(store: Store) -> None:
    with pytest.raises(BadRequest):
        async with store.read() as q:
            await q.certificates.list(limit=-1)
    with pytest.raises(BadRequest):
        async with store.read() as q:
            await q.certificates.get("not-hex")


def test_migrations_run_standalone_with_an_async_url(tmp_path) -> None:
    """env.py without a handed-over connection: builds an async engine and uses run_sync."""
    from alembic import command

    db = tmp_path / "cli.db"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{db}")
    command.upgrade(config, "heads")

    async def check() -> list[str]:
        store = await Store.open(f"sqlite+aiosqlite:///{db}")  # already at head: no-op
        try:
            async with store.transaction() as q:
                await q.cas.insert(make_ca())
            async with store.read() as q:
                return [ca.id for ca in await q.cas.list()]
        finally:
            await store.close()

    assert asyncio.run(check()) == ["root1"]

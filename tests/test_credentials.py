"""Enrollment credentials (gateway.credentials) on SQLite and PostgreSQL, and HTTP Basic parsing.

Store fixtures in conftest.py: every store test runs on a SQLite file and on a real
PostgreSQL schema; "two workers" are two Store instances on the same database.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable

import pytest
from sqlalchemy import select

from gateway.clock import FakeClock
from gateway.credentials import (
    LAST_USED_RESOLUTION,
    NO_LOCKOUT,
    SHARED_SECRET,
    USER,
    CredentialInfo,
    Credentials,
    LockedOut,
    LockoutPolicy,
    check_username,
)
from gateway.edge.basic import (
    BasicCredentials,
    MalformedCredentials,
    NotBasic,
    auth_scheme,
    basic_header,
    parse_basic,
)
from gateway.errors import BadRequest, Conflict, ErrorKind, GatewayError, NotFound, Unauthorized
from gateway.events import EventRecorder
from gateway.secrets import hash_secret
from gateway.store import Store
from gateway.store import schema as t

if TYPE_CHECKING:
    from tests.conftest import StoreFactory

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def credentials(store: Store, clock: FakeClock, protocol: str = "est", **kw: object) -> Credentials:
    return Credentials(store, EventRecorder(store), clock, protocol, **kw)  # type: ignore[arg-type]


@pytest.fixture
def creds(store: Store, clock: FakeClock) -> Credentials:
    return credentials(store, clock)


async def events(store: Store, type_: str) -> list[dict[str, Any]]:
    async with store.read() as q:
        rows = (await q.connection.execute(
            select(t.events).where(t.events.c.type == type_).order_by(t.events.c.id))).all()
    return [dict(r._mapping) for r in rows]


async def stored_row(store: Store, credential_id: str) -> dict[str, Any]:
    async with store.read() as q:
        row = (await q.connection.execute(
            select(t.enrollment_credentials).where(t.enrollment_credentials.c.id == credential_id))).one()
    return dict(row._mapping)


async def refused(coro: Awaitable[object], exc: type[GatewayError] = Unauthorized) -> GatewayError:
    with pytest.raises(exc) as info:
        await coro
    return info.value


# --- users ---------------------------------------------------------------------------


async def test_create_and_verify_a_user(creds: Credentials, store: Store, clock: FakeClock) -> None:
    issued = await creds.create_user("lab", "tech", PASSWORD, label="bench", actor="cli")
    assert issued.secret == PASSWORD and PASSWORD not in repr(issued)
    info = issued.credential
    assert (info.kind, info.username, info.config_id, info.protocol) == (USER, "tech", "lab", "est")
    assert (info.label, info.created_by, info.created_at, info.failures) == ("bench", "cli", T0, 0)
    row = await stored_row(store, info.id)
    assert str(row["secret_hash"]).startswith("scrypt$") and PASSWORD not in str(row["secret_hash"])

    verified = await creds.verify("lab", "tech", PASSWORD)
    assert verified.id == info.id and verified.last_used_at == T0
    for user, password in (("tech", "wrong password"), ("nobody", PASSWORD), ("x", PASSWORD), ("a:b", PASSWORD)):
        exc = await refused(creds.verify("lab", user, password))
        assert exc.detail == "wrong user name or password" and exc.kind is ErrorKind.UNAUTHORIZED

    created = await events(store, "credential_create")
    assert len(created) == 1 and created[0]["protocol_config"] == "lab"
    assert created[0]["detail"] == {"protocol": "est", "credential_id": info.id, "kind": "user",
                                    "username": "tech", "label": "bench", "actor": "cli"}


async def test_generated_password_is_returned_once_and_works(creds: Credentials) -> None:
    issued = await creds.create_user("lab", "device-01")
    assert len(issued.secret) >= 20
    assert (await creds.verify("lab", "device-01", issued.secret)).username == "device-01"
    listed = await creds.list("lab")
    assert all(issued.secret not in repr(c) for c in listed)


async def test_list_never_exposes_hashes(creds: Credentials) -> None:
    await creds.create_user("lab", "zed", PASSWORD)
    await creds.create_user("lab", "amy", PASSWORD)
    await creds.create_secret("lab", "a static challenge")
    await creds.create_user("other", "bob", PASSWORD)
    listed = await creds.list("lab")
    assert [(c.kind, c.username) for c in listed] == [(USER, "amy"), (USER, "zed"), (SHARED_SECRET, None)]
    assert [c.username for c in await creds.list("lab", kind=USER)] == ["amy", "zed"]
    assert "secret_hash" not in {f.name for f in dataclasses.fields(CredentialInfo)}
    for c in listed:
        assert "scrypt" not in repr(c) and not any("scrypt" in str(v) for v in dataclasses.asdict(c).values())
    one = await creds.get("lab", listed[0].id)
    assert one == listed[0] and "scrypt" not in repr(one)
    assert await creds.find_user("lab", "amy") == listed[0]


async def test_duplicate_user_is_a_conflict_unless_replaced(creds: Credentials) -> None:
    first = await creds.create_user("lab", "tech", PASSWORD, label="one")
    await refused(creds.create_user("lab", "tech", "another password"), Conflict)
    again = await creds.create_user("lab", "tech", "another password", replace=True)
    assert again.credential.id == first.credential.id and again.credential.label == "one"
    await refused(creds.verify("lab", "tech", PASSWORD))
    assert (await creds.verify("lab", "tech", "another password")).id == first.credential.id
    # the same name in another configuration or protocol is another credential
    await creds.create_user("lab2", "tech", PASSWORD)


async def test_scope_is_protocol_and_configuration(store: Store, clock: FakeClock) -> None:
    est, scep = credentials(store, clock, "est"), credentials(store, clock, "scep")
    user = await est.create_user("lab", "tech", PASSWORD)
    await scep.create_user("lab", "tech", "scep password")
    await refused(scep.verify("lab", "tech", PASSWORD))
    await refused(est.verify("lab2", "tech", PASSWORD))
    assert await scep.get("lab", user.credential.id) is None
    await refused(scep.disable("lab", user.credential.id), NotFound)
    await refused(scep.delete("lab", user.credential.id), NotFound)
    assert [c.protocol for c in await scep.list("lab")] == ["scep"]


async def test_set_password_disable_enable_delete(creds: Credentials, store: Store) -> None:
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    generated = await creds.set_password("lab", "tech", actor="admin")
    await refused(creds.verify("lab", "tech", PASSWORD))
    assert (await creds.verify("lab", "tech", generated)).id == info.id
    assert await creds.set_password("lab", "tech", "chosen password") == "chosen password"
    await refused(creds.set_password("lab", "nobody", "chosen password"), NotFound)

    assert (await creds.disable("lab", info.id, actor="admin")).disabled is True
    exc = await refused(creds.verify("lab", "tech", "chosen password"))
    assert exc.detail == "wrong user name or password"  # a disabled user looks like a wrong password
    assert (await creds.enable("lab", info.id)).disabled is False
    assert (await creds.verify("lab", "tech", "chosen password")).id == info.id

    await creds.delete("lab", info.id, actor="admin")
    await refused(creds.verify("lab", "tech", "chosen password"))
    await refused(creds.delete("lab", info.id), NotFound)
    assert await creds.list("lab") == ()
    for type_ in ("credential_password", "credential_disable", "credential_enable", "credential_delete"):
        assert len(await events(store, type_)) >= 1, type_
    assert all(r["detail"].get("actor") == "admin" for r in await events(store, "credential_disable"))


async def test_username_and_password_rules(creds: Credentials) -> None:
    for bad in ("a", "x" * 65, "a:b", "  padded", "tab\there", "line\nbreak", "nbsp\u00a0x", ""):
        await refused(creds.create_user("lab", bad, PASSWORD), BadRequest)
    await refused(creds.create_user("lab", "tech", "short"), BadRequest)
    await refused(creds.create_secret("lab", "short"), BadRequest)
    assert check_username("ab") == "ab" and check_username("x" * 64) == "x" * 64
    assert check_username("alice@example.com") == "alice@example.com"
    assert check_username("DOMAIN\\user name") == "DOMAIN\\user name"
    # NFC: a decomposed é is stored and found as the composed one
    await creds.create_user("lab", "Jose\u0301", PASSWORD)
    assert (await creds.verify("lab", "Jos\u00e9", PASSWORD)).username == "Jos\u00e9"
    await refused(creds.verify("lab", "jos\u00e9", PASSWORD))  # case-sensitive


async def test_import_hash_adopts_existing_scrypt_hashes(creds: Credentials) -> None:
    user = await creds.import_hash("lab", USER, hash_secret("legacy password"), username="old", actor="migration")
    assert (await creds.verify("lab", "old", "legacy password")).id == user.id
    await creds.import_hash("lab", SHARED_SECRET, hash_secret("legacy challenge"))
    assert (await creds.verify_secret("lab", "legacy challenge")).kind == SHARED_SECRET
    await refused(creds.import_hash("lab", USER, "plaintext", username="x1"), BadRequest)
    await refused(creds.import_hash("lab", USER, hash_secret("p")), BadRequest)  # no user name
    await refused(creds.import_hash("lab", SHARED_SECRET, hash_secret("p"), username="x1"), BadRequest)
    await refused(creds.import_hash("lab", USER, hash_secret("p"), username="old"), Conflict)


# --- failures and lockout ----------------------------------------------------------------


async def test_wrong_passwords_count_and_a_success_resets(creds: Credentials, store: Store) -> None:
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    for expected in (1, 2, 3):
        await refused(creds.verify("lab", "tech", "wrong password"))
        assert (await creds.get("lab", info.id)).failures == expected  # type: ignore[union-attr]
    assert (await creds.verify("lab", "tech", PASSWORD)).failures == 0
    assert (await stored_row(store, info.id))["failures"] == 0
    for _ in range(4):  # 4 more: still under the default limit of 5 consecutive failures
        await refused(creds.verify("lab", "tech", "wrong password"))
    assert (await creds.verify("lab", "tech", PASSWORD)).failures == 0


async def test_lockout_after_n_failures_and_release_after_the_period(
    creds: Credentials, store: Store, clock: FakeClock,
) -> None:
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    for _ in range(4):
        exc = await refused(creds.verify("lab", "tech", "wrong password"))
        assert not isinstance(exc, LockedOut)
    locked = await refused(creds.verify("lab", "tech", "wrong password"), LockedOut)
    assert isinstance(locked, LockedOut) and locked.until == T0 + dt.timedelta(minutes=15)
    assert locked.kind is ErrorKind.UNAUTHORIZED
    # the right password is refused while locked, and failures stop counting
    await refused(creds.verify("lab", "tech", PASSWORD), LockedOut)
    await refused(creds.verify("lab", "tech", "wrong password"), LockedOut)
    row = await stored_row(store, info.id)
    assert row["failures"] == 5 and row["locked_until"] == T0 + dt.timedelta(minutes=15)
    lockouts = await events(store, "credential_lockout")
    assert len(lockouts) == 1 and lockouts[0]["status"] == "failure"
    assert lockouts[0]["detail"]["credential_id"] == info.id

    clock.advance(dt.timedelta(minutes=14, seconds=59))
    await refused(creds.verify("lab", "tech", PASSWORD), LockedOut)
    clock.advance(1)
    verified = await creds.verify("lab", "tech", PASSWORD)
    assert verified.failures == 0 and verified.locked_until is None and verified.last_used_at == clock.now


async def test_a_failure_after_the_lockout_ended_starts_a_new_count(creds: Credentials, clock: FakeClock) -> None:
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    for _ in range(4):
        await refused(creds.verify("lab", "tech", "wrong password"))
    await refused(creds.verify("lab", "tech", "wrong password"), LockedOut)
    clock.advance(dt.timedelta(minutes=15))
    exc = await refused(creds.verify("lab", "tech", "wrong password"))
    assert not isinstance(exc, LockedOut)
    after = await creds.get("lab", info.id)
    assert after is not None and after.failures == 1 and after.locked_until is None


async def test_lockout_policy_per_call_site(creds: Credentials, clock: FakeClock) -> None:
    await creds.create_user("lab", "tech", PASSWORD)
    strict = LockoutPolicy(max_failures=2, period=dt.timedelta(seconds=30))
    await refused(creds.verify("lab", "tech", "wrong password", lockout=strict))
    locked = await refused(creds.verify("lab", "tech", "wrong password", lockout=strict), LockedOut)
    assert locked.until == T0 + dt.timedelta(seconds=30)  # type: ignore[attr-defined]
    clock.advance(30)
    assert (await creds.verify("lab", "tech", PASSWORD)).failures == 0
    for _ in range(10):  # NO_LOCKOUT counts but never locks
        exc = await refused(creds.verify("lab", "tech", "wrong password", lockout=NO_LOCKOUT))
        assert not isinstance(exc, LockedOut)
    with pytest.raises(ValueError):
        LockoutPolicy(max_failures=0)
    with pytest.raises(ValueError):
        LockoutPolicy(period=dt.timedelta(0))


async def test_operator_unlock_and_new_password_end_a_lockout(creds: Credentials, store: Store) -> None:
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    policy = LockoutPolicy(max_failures=1)
    await refused(creds.verify("lab", "tech", "wrong password", lockout=policy), LockedOut)
    unlocked = await creds.unlock("lab", info.id, actor="admin")
    assert unlocked.failures == 0 and unlocked.locked_until is None
    assert (await creds.verify("lab", "tech", PASSWORD)).id == info.id
    await refused(creds.verify("lab", "tech", "wrong password", lockout=policy), LockedOut)
    await creds.set_password("lab", "tech", "a new password")
    assert (await creds.verify("lab", "tech", "a new password")).failures == 0
    assert len(await events(store, "credential_unlock")) == 1


async def test_concurrent_failures_from_two_workers_still_lock(store_factory: "StoreFactory", clock: FakeClock) -> None:
    first, second = await store_factory(), await store_factory()
    worker_a, worker_b = credentials(first, clock), credentials(second, clock)
    info = (await worker_a.create_user("lab", "tech", PASSWORD)).credential

    # sequential, alternating workers: the count lives in the table, not in either process
    for worker in (worker_a, worker_b, worker_a, worker_b):
        await refused(worker.verify("lab", "tech", "wrong password"))
    await refused(worker_b.verify("lab", "tech", "wrong password"), LockedOut)
    await refused(worker_a.verify("lab", "tech", PASSWORD), LockedOut)
    await worker_b.unlock("lab", info.id)

    # concurrent: 12 wrong guesses at once, split over both workers
    results = await asyncio.gather(
        *(w.verify("lab", "tech", f"wrong {i}") for i, w in enumerate([worker_a, worker_b] * 6)),
        return_exceptions=True,
    )
    assert all(isinstance(r, Unauthorized) for r in results)
    assert any(isinstance(r, LockedOut) for r in results)
    row = await stored_row(first, info.id)
    assert row["failures"] == 5  # exact: no lost update, nothing counted once locked
    assert row["locked_until"] == T0 + dt.timedelta(minutes=15)
    assert len(await events(first, "credential_lockout")) == 2  # one per lockout, not per worker
    for worker in (worker_a, worker_b):
        await refused(worker.verify("lab", "tech", PASSWORD), LockedOut)


async def test_a_success_racing_a_lock_does_not_count(creds: Credentials, store: Store, clock: FakeClock) -> None:
    """A check that passed before another worker's lock committed is refused after it."""
    info = (await creds.create_user("lab", "tech", PASSWORD)).credential
    await refused(creds.verify("lab", "tech", "wrong password"))  # failures=1: a success must write
    other = credentials(store, clock)
    async with store.read() as q:
        stale = (await q.connection.execute(
            select(t.enrollment_credentials).where(t.enrollment_credentials.c.id == info.id))).one()
    for _ in range(4):
        await refused(other.verify("lab", "tech", "wrong password"))
    with pytest.raises(LockedOut):
        await creds._succeeded(stale, clock(), "wrong user name or password")


async def test_last_used_is_written_at_most_once_a_minute(creds: Credentials, clock: FakeClock) -> None:
    await creds.create_user("lab", "tech", PASSWORD)
    assert (await creds.verify("lab", "tech", PASSWORD)).last_used_at == T0
    clock.advance(LAST_USED_RESOLUTION - dt.timedelta(seconds=1))
    assert (await creds.verify("lab", "tech", PASSWORD)).last_used_at == T0
    clock.advance(1)
    assert (await creds.verify("lab", "tech", PASSWORD)).last_used_at == clock.now


# --- shared secrets ----------------------------------------------------------------------


async def test_shared_secrets_verify_replace_and_rotate(creds: Credentials, store: Store) -> None:
    await refused(creds.verify_secret("lab", "anything at all"))  # none yet
    one = await creds.create_secret("lab", "first static challenge", label="v1")
    assert one.credential.kind == SHARED_SECRET and one.credential.username is None
    two = await creds.create_secret("lab")  # generated, rotation: both valid
    assert (await creds.verify_secret("lab", "first static challenge")).id == one.credential.id
    assert (await creds.verify_secret("lab", two.secret)).id == two.credential.id
    exc = await refused(creds.verify_secret("lab", "wrong challenge"))
    assert exc.detail == "wrong secret"
    three = await creds.create_secret("lab", "the only challenge", replace=True)
    assert [c.id for c in await creds.list("lab")] == [three.credential.id]
    await refused(creds.verify_secret("lab", "first static challenge"))
    assert (await creds.verify_secret("lab", "the only challenge")).id == three.credential.id
    await creds.disable("lab", three.credential.id)
    await refused(creds.verify_secret("lab", "the only challenge"))
    # a shared secret is not a user, and a user's password is not a shared secret
    await creds.create_user("lab", "tech", PASSWORD)
    await refused(creds.verify_secret("lab", PASSWORD))


async def test_wrong_shared_secrets_lock_every_open_secret(creds: Credentials, store: Store,
                                                          clock: FakeClock) -> None:
    a = (await creds.create_secret("lab", "challenge number one")).credential
    b = (await creds.create_secret("lab", "challenge number two")).credential
    policy = LockoutPolicy(max_failures=3, period=dt.timedelta(minutes=1))
    await refused(creds.verify_secret("lab", "guess 1", lockout=policy))
    assert (await creds.verify_secret("lab", "challenge number one", lockout=policy)).failures == 0
    states = {c.id: c.failures for c in await creds.list("lab")}
    assert states == {a.id: 0, b.id: 1}  # each secret counts failures since its own last success
    for i in range(2):
        await refused(creds.verify_secret("lab", f"guess {i + 2}", lockout=policy))
    # b reached 3 and is locked; a is at 2 and still open
    assert (await creds.get("lab", b.id)).locked(clock())  # type: ignore[union-attr]
    assert not (await creds.get("lab", a.id)).locked(clock())  # type: ignore[union-attr]
    # b's own value is not checked while b is locked: it is one more wrong guess for a
    await refused(creds.verify_secret("lab", "challenge number two", lockout=policy), LockedOut)
    await refused(creds.verify_secret("lab", "guess 4", lockout=policy), LockedOut)
    await refused(creds.verify_secret("lab", "challenge number one", lockout=policy), LockedOut)
    assert len(await events(store, "credential_lockout")) == 2
    clock.advance(60)
    assert (await creds.verify_secret("lab", "challenge number two", lockout=policy)).id == b.id


# --- the door ------------------------------------------------------------------------------


async def test_door_credentials_are_scoped_to_its_protocol(store: Store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import Config
    from gateway.runtime import Gateway

    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", "correct horse battery staple")
    gw = await Gateway.open(Config(data_dir=tmp_path / "data"), store=store)
    gw.clock = FakeClock(T0)
    est, scep = gw.door("est"), gw.door("scep")
    assert est.credentials is est.credentials and est.credentials.protocol == "est"
    issued = await est.credentials.create_user("lab", "tech", PASSWORD)
    assert issued.credential.created_at == T0  # the gateway's clock
    assert (await est.credentials.verify_basic("lab", basic_header("tech", PASSWORD))).username == "tech"
    await refused(scep.credentials.verify("lab", "tech", PASSWORD))
    assert len(await events(store, "credential_create")) == 1


# --- HTTP Basic parsing (no store) ---------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_basic_parses_and_the_scheme_is_case_insensitive() -> None:
    value = b64(b"tech:pass:with:colons")
    for header in (f"Basic {value}", f"basic {value}", f"BASIC  {value}", f"  Basic {value}  "):
        assert parse_basic(header) == BasicCredentials("tech", "pass:with:colons")
    assert parse_basic(f"Basic {b64(b'tech:')}") == BasicCredentials("tech", "")
    utf8 = "Basic " + b64("J\u00f6rg:p\u00e4ss".encode())
    assert parse_basic(utf8) == BasicCredentials("J\u00f6rg", "p\u00e4ss")
    assert parse_basic(basic_header("tech", "pw")).password == "pw"
    assert "pw" not in repr(parse_basic(basic_header("tech", "pw")))
    assert auth_scheme(f"BASIC {value}") == "basic" and auth_scheme("Negotiate abc") == "negotiate"
    assert auth_scheme(None) is None and auth_scheme("   ") is None


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer abc", "Negotiate YWJj", "BasicdGVjaDpwdw==",
                                    "Digest username=tech"])
def test_basic_missing_or_other_scheme(header: str | None) -> None:
    with pytest.raises(NotBasic) as info:
        parse_basic(header)
    assert info.value.kind is ErrorKind.UNAUTHORIZED


@pytest.mark.parametrize("header", [
    "Basic",  # no value
    "Basic   ",
    "Basic dGVjaDpwdw",  # missing padding
    "Basic dGVjaDpwdw===",  # too much padding
    "Basic dGVj aDpwdw==",  # space inside
    "Basic dGVjaDpwdw==,realm=x",  # trailing parameters
    "Basic dGVj*DpwZA==",  # outside the alphabet
    "Basic dGVjaDpwdw==\u00e9",  # not ASCII
    "Basic dGVjaC1wdw==",  # "tech-pw": no colon
    "Basic " + b64(b"nocolon"),
    "Basic " + b64(b":password"),  # empty user
    "Basic " + b64(b"te\x00ch:pw"),  # control character in the user name
    "Basic " + b64(b"te\x1bch:pw"),
    "Basic " + b64(b"\xffuser:pw"),  # not UTF-8
    "Basic " + b64(b"us\xe9r:p\xe4ss"),  # latin-1, refused without the fallback
    "Basic " + "A" * 9000,
])
def test_basic_malformed(header: str) -> None:
    with pytest.raises(MalformedCredentials) as info:
        parse_basic(header)
    assert info.value.kind is ErrorKind.UNAUTHORIZED and isinstance(info.value, Unauthorized)


def test_basic_latin1_fallback_for_pre_rfc7617_clients() -> None:
    header = "Basic " + b64(b"us\xe9r:p\xe4ss")
    assert parse_basic(header, latin1_fallback=True) == BasicCredentials("us\u00e9r", "p\u00e4ss")
    utf8 = "Basic " + b64("us\u00e9r:p\u00e4ss".encode())
    assert parse_basic(utf8, latin1_fallback=True) == BasicCredentials("us\u00e9r", "p\u00e4ss")  # UTF-8 first
    with pytest.raises(MalformedCredentials):  # C1 controls are still refused in the user name
        parse_basic("Basic " + b64(b"u\x85ser:pw"), latin1_fallback=True)
    with pytest.raises(ValueError):
        basic_header("a:b", "pw")

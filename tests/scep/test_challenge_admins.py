"""Challenge admins are enrollment credentials of the core (``enrollment_credentials``):
locked out after repeated wrong passwords (over real HTTPS, on the gateway's injected
clock), their hashes held only there, and admins of an older data directory moved there
by the upgrade (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conformance.scep.simulator import ScepTestClient, make_csr, parse_cert_rep
from conformance.scep.support import served
from gateway.clock import FakeClock
from gateway.secrets import hash_secret, verify_secret
from gateway.store import Store
from gateway.store.records import EventFilter
from gateway.store.engine import alembic_config
from gateway.store.schema import enrollment_credentials
from gateway.web.app import create_http_app
from protocols.scep import cms as scms
from protocols.scep import schema
from protocols.scep.admins import ADMIN_LOCKOUT, LABEL
from protocols.scep.http import REALM
from protocols.scep.ra import issue_ra
from protocols.scep.repository import ScepRepository
from protocols.scep.types import PkiStatus
from tests.conftest import PG_URL, _pg_admin, _require_postgres

from .conftest import Env, make_gateway
from .test_challenges import API_KEY, NDES_RE, admin, basic  # noqa: F401 - admin is a fixture

JAMF = {"webhook": {"webhookEvent": "SCEPChallenge"}, "event": {"udid": "UDID-1"}}


# --- lockout over HTTPS ---------------------------------------------------------------------


async def test_challenge_admin_is_locked_out_after_wrong_passwords_over_https(tmp_path: Path) -> None:
    clock = FakeClock()
    async with served(tmp_path, clock=clock) as gateway, aiohttp.ClientSession() as session:
        user, password = gateway.dev["admin_username"], gateway.dev["admin_password"]
        page_url = f"{gateway.info.https}/certsrv/mscep_admin/"
        webhook_url = f"{gateway.info.https}/scep/scep/webhook/jamf"

        async def page(pw: str) -> tuple[int, str | None, bytes]:
            async with session.get(page_url, headers=basic(user, pw), ssl=gateway.ssl()) as resp:
                return resp.status, resp.headers.get("WWW-Authenticate"), await resp.read()

        assert (await page(password))[0] == 200  # a success first: the count starts at zero
        max_failures = ADMIN_LOCKOUT.max_failures
        assert max_failures is not None
        refusals = [await page(f"wrong-password-{i}") for i in range(max_failures)]
        assert {r[:2] for r in refusals} == {(401, REALM)}
        refused_body = refusals[0][2]
        # locked: the right password is refused, with the very answer a wrong one gets
        assert await page(password) == (401, REALM, refused_body)
        async with session.post(webhook_url, json=JAMF, headers=basic(user, password), ssl=gateway.ssl()) as resp:
            assert resp.status == 401  # one count for both doors of the admin
        events = await gateway.core.list_events(EventFilter(type="credential_lockout"))
        assert [(e.status, e.detail["username"]) for e in events] == [("failure", user)]
        failures = await gateway.core.list_events(EventFilter(type="scep_challenge", status="failure"))
        # the attempt that reached the limit, and the two after it, were refused as locked
        assert sorted(e.detail["detail"] for e in failures) == ["authentication failed"] * (max_failures - 1) \
            + ["locked out"] * 3

        clock.advance(ADMIN_LOCKOUT.period - dt.timedelta(seconds=1))
        assert (await page(password))[0] == 401  # still locked
        clock.advance(dt.timedelta(seconds=2))
        status, _, body = await page(password)
        assert status == 200
        assert NDES_RE.search(body[2:].decode("utf-16-le"))

        # locked again; an operator's new password (admin API) ends the lockout at once
        for i in range(max_failures):
            await page(f"wrong-again-{i}")
        assert (await page(password))[0] == 401
        reset = await gateway.admin("PUT", f"/scep/scep/challenge-admins/{user}", {"password": "new-password-0123"})
        assert reset == {"username": user, "password": "new-password-0123"}
        assert (await page("new-password-0123"))[0] == 200
        assert (await page(password))[0] == 401


# --- where the hash lives -------------------------------------------------------------------


async def test_admin_password_hash_lives_only_in_enrollment_credentials(env: Env, admin: Any) -> None:
    client, _ = admin
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with client.put("/scep/scep/challenge-admins/jamf-pro", json={}, headers=auth) as resp:
        assert resp.status == 200
        password = (await resp.json())["password"]
    async with env.gw.store.engine.connect() as conn:
        secrets = (await conn.execute(select(schema.secrets))).all()
        users = (await conn.execute(select(enrollment_credentials).where(
            enrollment_credentials.c.protocol == "scep"))).all()
    assert [(s.kind, s.name) for s in secrets] == [("static_challenge", "static")]  # the static challenge only
    (row,) = users
    assert (row.protocol_config, row.kind, row.username, row.label) == ("scep", "user", "jamf-pro", LABEL)
    assert row.secret_hash.startswith("scrypt$") and password not in row.secret_hash
    assert verify_secret(password, row.secret_hash)
    [info] = await env.door.credentials.list("scep")
    assert info.id == row.id and info.username == "jamf-pro"
    # a reset replaces the hash in place; removing deletes the row
    async with client.put("/scep/scep/challenge-admins/jamf-pro", json={"password": "reset-password-1"},
                          headers=auth) as resp:
        assert resp.status == 200
    [again] = await env.door.credentials.list("scep")
    assert again.id == row.id
    async with client.delete("/scep/scep/challenge-admins/jamf-pro", headers=auth) as resp:
        assert resp.status == 204
    assert await env.door.credentials.list("scep") == ()
    async with client.delete("/scep/scep/challenge-admins/jamf-pro", headers=auth) as resp:
        assert resp.status == 404


# --- upgrade of a data directory whose admins are in scep_secrets ---------------------------

LEGACY_ADMIN, LEGACY_PASSWORD = "ndes-admin", "legacy-admin-password"
LEGACY_STATIC = "legacy-static-challenge"
DECOMPOSED = "Cafe\u0301-admin"  # stored as typed on a system that does not normalise
COMPOSED = "Caf\u00e9-admin"
CREATED = dt.datetime(2026, 6, 1, 8, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
async def legacy_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """(url, schema) of an empty database on either engine."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", None
        return
    await _require_postgres()
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield PG_URL, name
    finally:
        await _pg_admin(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.asynccontextmanager
async def engine_for(url: str, schema_name: str | None) -> AsyncIterator[AsyncConnection]:
    """A connection on the database outside any gateway (to read what it holds before)."""
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema_name}}
                                 if schema_name else {})
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def make_legacy_database(url: str, schema_name: str | None) -> None:
    """The schema as a release before the move left it (core ``0002``, SCEP ``scep_0001``),
    holding challenge admins and a static challenge in ``scep_secrets``."""
    if schema_name:
        await _pg_admin(f'CREATE SCHEMA "{schema_name}"')
    rows = [
        ("challenge_admin", LEGACY_ADMIN, LEGACY_PASSWORD),
        ("challenge_admin", DECOMPOSED, "cafe-admin-password"),
        ("challenge_admin", "x", "one-letter-password"),  # too short a name for the credentials
        ("static_challenge", "static", LEGACY_STATIC),
    ]

    def upgrade(connection: Connection, target: str) -> None:
        command.upgrade(alembic_config(connection), target)

    async with engine_for(url, schema_name) as conn:
        for target in ("0002", "scep_0001"):
            await conn.run_sync(upgrade, target)
        await conn.execute(schema.secrets.insert(), [
            {"config_id": "scep", "kind": kind, "name": name, "secret_hash": hash_secret(secret),
             "created_at": CREATED} for kind, name, secret in rows
        ])
        await conn.commit()


async def test_upgrade_moves_challenge_admins_to_enrollment_credentials(
    legacy_store: tuple[str, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, schema_name = legacy_store
    await make_legacy_database(url, schema_name)
    async with engine_for(url, schema_name) as conn:
        (legacy_hash,) = (await conn.execute(select(schema.secrets.c.secret_hash).where(
            schema.secrets.c.name == LEGACY_ADMIN))).one()
    with caplog.at_level(logging.WARNING, logger="gateway.scep"):
        store = await Store.open(url, schema=schema_name)  # what a newer gateway does on start: migrate
    assert "'x'" in caplog.text and "gateway scep admin add" in caplog.text
    gw = await make_gateway(tmp_path, monkeypatch, store=store)
    try:
        # the tables as the upgrade left them: moved rows gone, the hash carried over as is
        async with store.engine.connect() as conn:
            secrets = {(r.kind, r.name) for r in await conn.execute(select(schema.secrets))}
            users = {r.username: r for r in await conn.execute(select(enrollment_credentials).where(
                enrollment_credentials.c.protocol == "scep"))}
        assert secrets == {("static_challenge", "static"), ("challenge_admin", "x")}
        assert set(users) == {LEGACY_ADMIN, COMPOSED}
        moved = users[LEGACY_ADMIN]
        assert (moved.protocol_config, moved.kind, moved.secret_hash, moved.failures, moved.disabled) == \
            ("scep", "user", legacy_hash, 0, False)
        assert moved.created_at == CREATED and moved.label == "challenge admin"

        # and served: the old passwords open mscep_admin, the static challenge still enrolls
        await gw.authority.create_config("scep", "scep", "issuing", ["device"],
                                         settings={"ndes": True, "admin_over_http": True})
        await issue_ra(gw.door("scep"), ScepRepository(gw.door("scep").tables), "scep", "issuing")
        client = await aiohttp_client(create_http_app(gw))
        for user, password, status in ((LEGACY_ADMIN, LEGACY_PASSWORD, 200), (COMPOSED, "cafe-admin-password", 200),
                                       (DECOMPOSED, "cafe-admin-password", 200), ("x", "one-letter-password", 401),
                                       (LEGACY_ADMIN, "not-the-password", 401)):
            async with client.get("/certsrv/mscep_admin/", headers=basic(user, password)) as resp:
                assert resp.status == status, (user, status)
                if status == 200:
                    challenge = NDES_RE.search((await resp.read())[2:].decode("utf-16-le"))
                    assert challenge is not None
        async with client.get("/scep/scep?operation=GetCACert") as resp:
            ra = next(c for c in scms.certificates_of_degenerate(await resp.read())
                      if "SCEP RA" in c.subject.rfc4514_string())
        device = ScepTestClient(ra)
        async with client.post("/scep/scep?operation=PKIOperation",
                               data=device.pkcs_req(make_csr(device.key, "upgraded", challenge=LEGACY_STATIC))[0],
                               headers={"Content-Type": "application/x-pki-message"}) as resp:
            assert parse_cert_rep(await resp.read()).status is PkiStatus.SUCCESS
    finally:
        await gw.close()

"""Requests held for approval have URL-safe ids, so ``POST /admin/requests/<id>/approve``
works for the standard-base64 transactionIDs scepclient sends (``/``, ``+``, ``=``), and
ids stored before are renamed by the upgrade (migration scep_0004), on SQLite and
PostgreSQL, through the real admin API."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from alembic import command
from cryptography import x509
from sqlalchemy import text, update
from sqlalchemy.engine import Connection

from conformance.scep.simulator import ScepTestClient, make_csr, parse_cert_rep
from gateway.admin.api import create_admin_app
from gateway.store import Store
from gateway.store.engine import alembic_config
from gateway.store.records import ApiKeyRecord
from gateway.web.app import create_http_app
from protocols.scep import ADAPTER
from protocols.scep.repository import ScepRepository
from gateway.secrets import api_key_hash
from gateway.store import schema as core_schema
from protocols.scep import schema
from protocols.scep.service import ScepService, request_id_for
from protocols.scep.types import PkiStatus
from tests.conftest import _pg_admin

from .conftest import PASSPHRASE, STATIC, add_scep_config, make_gateway
from .test_challenge_admins import engine_for, legacy_store  # noqa: F401 - legacy_store is a fixture
from .test_challenges import API_KEY


def scepclient_tid() -> str:
    """What micromdm's scepclient sends: standard base64 of a SHA-1."""
    while True:
        tid = base64.b64encode(hashlib.sha1(os.urandom(16)).digest()).decode()
        if "/" in tid or "+" in tid:
            return tid


def test_request_ids_are_url_safe() -> None:
    assert request_id_for("7XXEY-ERLPU-2JDR9") == "7XXEY-ERLPU-2JDR9"  # cryptlib's, kept as sent
    assert request_id_for("ab+c/d==") == "ab-c_d"
    assert request_id_for("..").startswith("scep-")
    assert request_id_for("a b").startswith("scep-")
    assert request_id_for("x" * 65).startswith("scep-")


async def _serve(env_gw: Any, aiohttp_client: Any) -> tuple[Any, Any]:
    async with env_gw.store.transaction() as q:
        await q.api_keys.insert(ApiKeyRecord(id="k1", name="ops", key_sha256=api_key_hash(API_KEY)))
    admin_app = create_admin_app(env_gw)
    ADAPTER.mount_admin(admin_app)
    http_app: web.Application = create_http_app(env_gw)
    return await aiohttp_client(admin_app), await aiohttp_client(http_app)


async def _approve_and_poll(admin: Any, http: Any, device: ScepTestClient, tid: str, body: bytes) -> None:
    """Find the held request in the queue, approve it by the id listed, resend: SUCCESS."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with admin.get("/requests?status=pending", headers=auth) as resp:
        assert resp.status == 200
        items = (await resp.json())["items"]
    assert len(items) == 1
    request_id = items[0]["id"]
    assert request_id == request_id_for(tid) and "/" not in request_id and "=" not in request_id
    async with admin.post(f"/requests/{request_id}/approve", headers=auth) as resp:
        assert resp.status == 200, await resp.text()
    async with http.post("/scep/manual?operation=PKIOperation", data=body) as resp:
        rep = parse_cert_rep(await resp.read())
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    assert device.issued(rep, with_openssl=False)[0].subject == x509.Name.from_rfc4514_string("CN=held-b64")


async def _held(gw: Any, http: Any) -> tuple[ScepTestClient, str, bytes]:
    """A PKCSReq with a scepclient-style transactionID, held for approval (PENDING)."""
    ra = (await ScepService(gw.door("scep")).context("manual")).ra.current.certificate
    device = ScepTestClient(ra, cn="held-b64")
    tid = scepclient_tid()
    body, _tid, _ = device.pkcs_req(make_csr(device.key, "held-b64", challenge=STATIC), transaction_id=tid)
    async with http.post("/scep/manual?operation=PKIOperation", data=body) as resp:
        rep = parse_cert_rep(await resp.read())
    assert rep.status is PkiStatus.PENDING, rep.fail_text
    return device, tid, body


async def _manual_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy_store: tuple[str, str | None],
) -> Any:
    """A gateway on ``legacy_store`` with a SCEP configuration ``manual`` that holds requests."""
    url, schema_name = legacy_store
    if schema_name:
        await _pg_admin(f'CREATE SCHEMA "{schema_name}"')
    store = await Store.open(url, schema=schema_name)
    gw = await make_gateway(tmp_path, monkeypatch, store=store)
    try:
        await add_scep_config(gw, ScepRepository(gw.door("scep").tables), "manual", settings={"approval": "manual"})
    except BaseException:
        await gw.close()
        raise
    return gw


async def test_a_base64_transaction_id_is_approved_through_the_admin_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any, legacy_store: tuple[str, str | None],
) -> None:
    gw = await _manual_gateway(tmp_path, monkeypatch, legacy_store)
    try:
        admin, http = await _serve(gw, aiohttp_client)
        device, tid, body = await _held(gw, http)
        await _approve_and_poll(admin, http, device, tid, body)
    finally:
        await gw.close()


async def test_the_upgrade_renames_stored_base64_request_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any, legacy_store: tuple[str, str | None],
) -> None:
    url, schema_name = legacy_store
    gw = await _manual_gateway(tmp_path, monkeypatch, legacy_store)
    try:
        _admin, http = await _serve(gw, aiohttp_client)
        device, tid, body = await _held(gw, http)
    finally:
        await gw.close()

    # the database as an older release left it: the request named by the raw transactionID
    def downgrade(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "scep_0003")

    async with engine_for(url, schema_name) as conn:
        await conn.run_sync(downgrade)
        await conn.execute(update(core_schema.requests).where(core_schema.requests.c.id == request_id_for(tid))
                           .values(id=tid))
        await conn.execute(update(schema.transactions).values(request_id=tid))
        await conn.commit()

    store = await Store.open(url, schema=schema_name)  # a newer gateway starts: migrates
    gw = await make_gateway_again(tmp_path, monkeypatch, store)
    try:
        async with engine_for(url, schema_name) as conn:
            ids = (await conn.execute(text("select id from requests"))).scalars().all()
        assert ids == [request_id_for(tid)]
        admin, http = await _serve_again(gw, aiohttp_client)
        await _approve_and_poll(admin, http, device, tid, body)
    finally:
        await gw.close()


async def make_gateway_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: Store) -> Any:
    """The same data directory and store, opened by a new gateway process."""
    from gateway.config import Config
    from gateway.runtime import Gateway

    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", PASSPHRASE)
    return await Gateway.open(Config(data_dir=tmp_path), store=store)


async def _serve_again(gw: Any, aiohttp_client: Any) -> tuple[Any, Any]:
    admin_app = create_admin_app(gw)
    ADAPTER.mount_admin(admin_app)
    http_app: web.Application = create_http_app(gw)
    return await aiohttp_client(admin_app), await aiohttp_client(http_app)

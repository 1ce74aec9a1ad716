"""The same PKCSReq sent K times at once gets one certificate (RFC 8894 section 4.7).

Identical bytes are POSTed concurrently over real HTTP to a real server, on SQLite and
on PostgreSQL, in one process and across two worker processes sharing the store: per
transactionID exactly one certificate is in the store, and every SUCCESS reply carries
that certificate (the others are PENDING, which the client polls).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.harness import GatewayProcess, run_cli
from conformance.scep.simulator import ScepTestClient, make_csr, parse_cert_rep
from gateway.config import load_config
from gateway.store import Store
from gateway.store.records import CertificateFilter
from protocols.scep import cms as scms
from protocols.scep.types import PkiStatus

from .conftest import STATIC, Env, add_scep_config, make_gateway
from ..conftest import StoreFactory, fresh_pg_database

ROUNDS = {2: 3, 4: 3, 8: 2}
"""Concurrency K: how many transactionIDs are sent K times at once."""


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


async def _burst(session: aiohttp.ClientSession, url: str, device: ScepTestClient, cn: str,
                 k: int, challenge: str) -> tuple[str, list[bytes]]:
    """K concurrent POSTs of one PKCSReq; returns (transactionID, DER of every SUCCESS's certificate)."""
    body, tid, _ = device.pkcs_req(make_csr(device.key, cn, challenge=challenge))

    async def post() -> bytes:
        async with session.post(f"{url}?operation=PKIOperation", data=body,
                                headers={"Content-Type": "application/x-pki-message"}) as resp:
            data = await resp.read()
            assert resp.status == 200, data[:300]
            return data

    issued: list[bytes] = []
    for raw in await asyncio.gather(*[post() for _ in range(k)]):
        rep = parse_cert_rep(raw)
        assert rep.transaction_id == tid
        assert rep.status in (PkiStatus.SUCCESS, PkiStatus.PENDING), (rep.status, rep.fail_text)
        if rep.status is PkiStatus.SUCCESS:
            certs = device.issued(rep, with_openssl=False)
            assert len(certs) == 1
            issued.append(_der(certs[0]))
    return tid, issued


async def _run_bursts(url: str, ra: x509.Certificate, challenge: str, prefix: str) -> dict[str, list[bytes]]:
    """Every round of :data:`ROUNDS`; returns each CN's SUCCESS certificates."""
    replies: dict[str, list[bytes]] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        for k, rounds in ROUNDS.items():
            for i in range(rounds):
                cn = f"{prefix}-k{k}-{i}"
                device = ScepTestClient(ra, cn=cn)
                _tid, issued = await _burst(session, url, device, cn, k, challenge)
                replies[cn] = issued
    return replies


def _check(replies: dict[str, list[bytes]], stored: list[tuple[str, bytes]]) -> None:
    """One certificate per transaction in the store; every SUCCESS carries it."""
    by_subject: dict[str, list[bytes]] = {}
    for subject, der in stored:
        by_subject.setdefault(subject, []).append(der)
    counts = Counter({cn: len(by_subject.get(f"CN={cn}", [])) for cn in replies})
    assert counts == Counter({cn: 1 for cn in replies}), counts
    for cn, issued in replies.items():
        assert issued, f"no SUCCESS for {cn}"  # the winner always answers SUCCESS
        assert set(issued) == {by_subject[f"CN={cn}"][0]}, cn


@pytest.fixture
async def served_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any,
                     store_factory: StoreFactory) -> Env:
    """The gateway on SQLite and on PostgreSQL, served on a real socket."""
    from aiohttp import web

    from gateway.web.app import create_http_app
    from protocols.scep.repository import ScepRepository
    from protocols.scep.service import SERVICE

    from .conftest import Clock

    store: Store = await store_factory()
    gw = await make_gateway(tmp_path, monkeypatch, store=store)
    repo = ScepRepository(gw.door("scep").tables)
    await add_scep_config(gw, repo)
    app: web.Application = create_http_app(gw)
    service = app[SERVICE]
    client = await aiohttp_client(app)
    env = Env(gw, repo, service, Clock(), client)
    yield env  # type: ignore[misc]
    await gw.close()


async def test_concurrent_copies_of_one_request_get_one_certificate(served_env: Env) -> None:
    env = served_env
    url = str(env.client.make_url(env.path))
    replies = await _run_bursts(url, await env.ra_certificate(), STATIC, "dup")
    records = await env.core.list_certificates(CertificateFilter(protocol_config="scep"), limit=500)
    _check(replies, [(r.subject, r.der) for r in records if r.profile != "scep-ra"])


# --- two worker processes sharing the store -----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest) -> Any:
    """None (SQLite in the data directory) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    async with fresh_pg_database("test_scepdup") as url:
        yield url


async def _stored(data_dir: Path, url: str | None) -> list[tuple[str, bytes]]:
    sql = "select subject, der from certificates where profile <> 'scep-ra'"
    if url is None:
        with sqlite3.connect(data_dir / "gateway.db") as conn:
            return [(s, bytes(d)) for s, d in conn.execute(sql).fetchall()]
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return [(r["subject"], bytes(r["der"])) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def _ra_of(ca_certs: bytes) -> x509.Certificate:
    """The RA in a GetCACert reply: the certificate that is not a CA."""
    for cert in scms.certificates_of_degenerate(ca_certs):
        try:
            if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                return cert
        except x509.ExtensionNotFound:
            return cert
    raise AssertionError("no RA certificate in GetCACert")


async def test_concurrent_copies_across_two_workers_get_one_certificate(
    tmp_path: Path, store_url: str | None,
) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", *(["--store-url", store_url] if store_url else []), data_dir=data_dir)
    cfg = load_config(data_dir)
    cfg.server.workers = 2
    cfg.save()
    import json

    challenge = json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())["scep"]["scep"]["challenge"]
    proc = GatewayProcess(data_dir)
    info = await asyncio.to_thread(proc.start)
    try:
        url = f"{info.http}/scep/scep"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}?operation=GetCACert") as resp:
                ra = _ra_of(await resp.read())
        replies = await _run_bursts(url, ra, challenge, "dup2w")
    finally:
        proc.stop()
    _check(replies, await _stored(data_dir, store_url))

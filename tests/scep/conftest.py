"""Fixtures for the SCEP tests: a gateway with dev-like CAs and a SCEP configuration,
served over real sockets (plain HTTP app via aiohttp's test server)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography import x509

from conformance.scep.simulator import CertRep, ScepTestClient, parse_cert_rep
from conformance.scep.support import CoreTables
from gateway.clock import Clock as GatewayClock
from gateway.clock import system_clock
from gateway.config import Config
from gateway.door import Door
from gateway.runtime import Gateway
from gateway.store import Store
from gateway.store.records import CertificateFilter
from gateway.web.app import create_http_app
from protocols.scep.admins import set_challenge_admin
from protocols.scep.challenge import set_static_challenge
from protocols.scep.ra import issue_ra
from protocols.scep.repository import ScepRepository
from protocols.scep.service import SERVICE, ScepService

PASSPHRASE = "scep-test-passphrase"
STATIC = "static-challenge-0123"
ADMIN_USER, ADMIN_PASSWORD = "ndes-admin", "admin-password-0123"


class Clock:
    """A settable clock for the service (real time unless set)."""

    def __init__(self) -> None:
        self.fixed: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.fixed or dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass
class Env:
    gw: Gateway
    repo: ScepRepository
    service: ScepService
    clock: Clock
    client: TestClient
    path: str = "/scep/scep"

    @property
    def door(self) -> Door:
        return self.gw.door("scep")

    @property
    def core(self) -> CoreTables:
        """The core's tables, for what a test checks or sets up there."""
        return CoreTables(self.gw)

    async def ra_certificate(self, config_id: str = "scep") -> x509.Certificate:
        ctx = await self.service.context(config_id)
        return ctx.ra.current.certificate

    async def ca_chain(self, config_id: str = "scep") -> tuple[x509.Certificate, ...]:
        return (await self.service.context(config_id)).ca_chain

    async def device(self, config_id: str = "scep", **kw: Any) -> ScepTestClient:
        return ScepTestClient(await self.ra_certificate(config_id), **kw)

    async def post(self, body: bytes, path: str | None = None) -> CertRep:
        async with self.client.post(f"{path or self.path}?operation=PKIOperation", data=body,
                                    headers={"Content-Type": "application/x-pki-message"}) as resp:
            data = await resp.read()
            assert resp.status == 200, data[:300]
            assert resp.content_type == "application/x-pki-message"
        return parse_cert_rep(data)

    async def add_manual_config(self) -> None:
        """A second configuration, ``manual``, holding requests for operator approval."""
        await add_scep_config(self.gw, self.repo, "manual", settings={"approval": "manual"})

    async def add_challenge_admin(self) -> None:
        await set_challenge_admin(self.door.credentials, "scep", ADMIN_USER, ADMIN_PASSWORD)

    async def certificate_count(self, config_id: str = "scep") -> int:
        """Certificates issued to devices of a configuration (its RA certificates aside)."""
        records = await self.core.list_certificates(CertificateFilter(protocol_config=config_id), limit=500)
        return sum(1 for r in records if r.profile != "scep-ra")


async def make_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, ca_key: str = "EC-P256",
                       store: Store | None = None, clock: GatewayClock = system_clock) -> Gateway:
    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", PASSPHRASE)
    gw = await Gateway.open(Config(data_dir=tmp_path), store=store, clock=clock)
    await gw.cas.hierarchy.create_root("root", "Test Root CA", "EC-P384")
    await gw.cas.load()
    await gw.cas.hierarchy.create_intermediate(await gw.cas.local("root"), "issuing", "Test Issuing CA", ca_key)
    await gw.cas.load()
    return gw


async def add_scep_config(gw: Gateway, repo: ScepRepository, config_id: str = "scep", *,
                          settings: dict[str, Any] | None = None, ca_id: str = "issuing") -> None:
    await gw.authority.create_config(config_id, "scep", ca_id, ["device", "tls-client"], settings=settings or {})
    await issue_ra(gw.door("scep"), repo, config_id, ca_id)
    await set_static_challenge(repo, config_id, STATIC)


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any) -> AsyncIterator[Env]:
    gw = await make_gateway(tmp_path, monkeypatch)
    repo = ScepRepository(gw.door("scep").tables)
    await add_scep_config(gw, repo, settings={"ndes": True})
    clock = Clock()
    app: web.Application = create_http_app(gw)
    service = app[SERVICE]  # the app's own service; its message clock is the test's
    service.clock = clock
    client = await aiohttp_client(app)
    try:
        yield Env(gw, repo, service, clock, client)
    finally:
        await gw.close()

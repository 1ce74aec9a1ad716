"""MDM web service fixtures: an initialized data directory made once (with the dev ``mdm``
configuration, its SCEP configuration ``mdm-scep``, digital ID and credential), a running
gateway per test, and zeep (an independent SOAP client) bound to its WSDL over HTTPS."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
import requests
import zeep
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from conformance.harness import GatewayInfo, running_gateway

CONFIG = "mdm"
SCEP_CONFIG = "mdm-scep"
DIGITAL_ID = "dev-device"


@pytest.fixture(scope="session")
def mdm_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway import bootstrap

    base = tmp_path_factory.mktemp("mdm-template") / "data"
    asyncio.run(bootstrap.initialize(base))
    return base


@dataclass
class MdmServer:
    gw: Any
    info: GatewayInfo
    tmp: Path

    @property
    def dev(self) -> dict[str, Any]:
        return next(e for e in self.info.data["protocols"]["mdm"] if e["config"] == CONFIG)

    @property
    def wsdl_url(self) -> str:
        return str(self.dev["wsdl"])

    def wsdl_for(self, config: str) -> str:
        return f"{self.info.https}/mdmws/{config}/AdminService?wsdl"

    def session(self, username: str | None = None, password: str | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment replaces verify (and proxies apply)
        s.verify = self.info.tls_ca
        if username is not None:
            s.auth = (username, password or "")
        return s

    async def client(self, username: str | None = None, password: str | None = None, *, config: str = CONFIG,
                     wsse: bool = False, soap12: bool = False) -> Any:
        """A zeep client on the configuration's WSDL (fetched from the gateway), authenticating
        with HTTP Basic (the dev credential unless told otherwise) or a WS-Security UsernameToken."""
        username = self.dev["username"] if username is None else username
        password = self.dev["password"] if password is None else password
        session = self.session(None if wsse else username, password)
        client = await asyncio.to_thread(zeep.Client, self.wsdl_for(config), transport=Transport(session=session),
                                         wsse=UsernameToken(username, password) if wsse else None)
        if soap12:
            return client.bind("AdminService", "AdminServiceSoap12")
        return client.service

    async def call(self, service: Any, operation: str, **kwargs: Any) -> Any:
        """A zeep call off the event loop (zeep is synchronous; the gateway runs on this loop)."""
        return await asyncio.to_thread(getattr(service, operation), **kwargs)


@pytest.fixture
async def mdm(mdm_data_dir: Path, tmp_path: Path) -> AsyncIterator[MdmServer]:
    target = tmp_path / "data"
    shutil.copytree(mdm_data_dir, target)
    async with running_gateway(target) as (gw, info):
        yield MdmServer(gw, info, tmp_path)


def variables(**values: str) -> dict[str, Any]:
    return {"Variable": [{"Name": k, "Value": v} for k, v in values.items()]}


# --- SCEP-challenge helpers (appended: micromdm's scepclient against the SCEP URL) -------


@pytest.fixture
def mdm_clock() -> Any:
    """The gateway's clock for tests that move time (challenge expiry) instead of sleeping."""
    from gateway.clock import FakeClock

    return FakeClock()


@pytest.fixture
async def mdm_timed(mdm_data_dir: Path, tmp_path: Path, mdm_clock: Any) -> AsyncIterator[MdmServer]:
    """Like ``mdm``, with the gateway on ``mdm_clock``."""
    target = tmp_path / "data"
    shutil.copytree(mdm_data_dir, target)
    async with running_gateway(target, clock=mdm_clock) as (gw, info):
        yield MdmServer(gw, info, tmp_path)


async def scep_ra_fingerprint(server: MdmServer, scep_config: str = SCEP_CONFIG) -> str:
    """SHA-256 of the SCEP configuration's RA certificate, what scepclient's -ca-fingerprint pins."""
    from cryptography.hazmat.primitives import hashes

    from protocols.scep.service import ScepService

    ctx = await ScepService(server.gw.door("scep")).context(scep_config)
    return ctx.ra.current.certificate.fingerprint(hashes.SHA256()).hex()


async def scep_certificates(server: MdmServer, scep_config: str = SCEP_CONFIG) -> list[Any]:
    """Device certificates issued through the SCEP configuration (not its RA's)."""
    from gateway.store.records import CertificateFilter
    from protocols.scep.ra import RA_PROFILE

    async with server.gw.store.read() as q:
        found = list(await q.certificates.list(CertificateFilter(protocol_config=scep_config), limit=1000))
    return [c for c in found if c.profile != RA_PROFILE]


async def scepclient(server: MdmServer, url: str, workdir: Path, challenge: str, *args: str) -> tuple[int, str]:
    """micromdm's scepclient enrolling at ``url`` with ``challenge`` (certificate: workdir/client.pem)."""
    from conformance.harness import require_client
    from conformance.scep.support import run

    binary = require_client("scepclient", "Debian package scep")
    workdir.mkdir(parents=True, exist_ok=True)
    result = await run(binary, "-server-url", url, "-private-key", str(workdir / "key.pem"),
                       "-ca-fingerprint", await scep_ra_fingerprint(server), "-challenge", challenge, *args,
                       cwd=workdir)
    return result.returncode, result.stdout + result.stderr


async def outstanding_challenges(server: MdmServer, scep_config: str = SCEP_CONFIG) -> int:
    """Unused challenges of the SCEP configuration, read from its store (expired ones too)."""
    import datetime as dt

    from protocols.scep.repository import ScepRepository

    repo = ScepRepository(server.gw.door("scep").tables)
    return len(await repo.list_challenges(scep_config, dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)))


async def scep_refusals(server: MdmServer) -> list[str]:
    """The reasons of the SCEP configuration's refused requests, from the audit trail (oldest first)."""
    from gateway.store.records import EventFilter

    async with server.gw.store.read() as q:
        found = list(await q.events.list(EventFilter(type="scep_request", protocol_config=SCEP_CONFIG), limit=500))
    return [str(e.detail.get("detail")) for e in sorted(found, key=lambda e: e.id) if e.status == "failure"]

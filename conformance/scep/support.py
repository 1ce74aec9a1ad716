"""Shared pieces of the SCEP real-client suites.

- :func:`served` runs the gateway in this process (real sockets, real TLS) on a copy of
  a data directory initialised once per session (``gateway init``: dev CAs, the ``scep``
  configuration with its RA, static challenge and challenge admin).
- :class:`Recorder` is a transparent HTTP proxy in front of the plain-HTTP listener that
  keeps every exchange; with ``GATEWAY_RECORD_FIXTURES=1`` the suites write them to
  ``fixtures/scep/`` together with the keys and configuration of the run, so the
  ordinary suite replays real client bytes (``tests/scep/test_recorded.py``).
- Real clients run as asyncio subprocesses: the gateway shares the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conformance.harness import (
    FIXTURES,
    Exchange,
    GatewayInfo,
    free_port,
    running_gateway,
    save_exchange,
)
from gateway.clock import Clock
from protocols.scep.service import ScepService

FIXTURE_DIR = FIXTURES / "scep"
RECORD = os.environ.get("GATEWAY_RECORD_FIXTURES", "") == "1"
_TEMPLATE: Path | None = None


async def _template() -> Path:
    global _TEMPLATE
    if _TEMPLATE is None or not (_TEMPLATE / "config.toml").exists():
        from gateway import bootstrap

        root = Path(tempfile.mkdtemp(prefix="scep-template-"))
        await bootstrap.initialize(root / "data")
        _TEMPLATE = root / "data"
    return _TEMPLATE


@dataclass
class Served:
    gw: Any
    info: GatewayInfo
    recorder: Recorder
    scep: ScepService = field(init=False)
    """A SCEP service of the test's own over the served gateway's door: it reads the same
    tables as the listeners' services (and sees their writes on its next call)."""

    def __post_init__(self) -> None:
        self.scep = ScepService(self.gw.door("scep"))

    @property
    def core(self) -> CoreTables:
        return CoreTables(self.gw)

    @property
    def dev(self) -> dict[str, Any]:
        from protocols.scep.adapter import DEV_ADMIN

        creds = json.loads((self.info.data_dir / "secrets" / "dev-credentials.json").read_text())
        return {**creds["scep"]["scep"], "admin_username": DEV_ADMIN}

    def url(self, config_id: str = "scep", *, https: bool = False, proxied: bool = True) -> str:
        if https:
            return f"{self.info.https}/scep/{config_id}"
        base = self.recorder.url if proxied else self.info.http
        return f"{base}/scep/{config_id}"

    def ssl(self) -> ssl.SSLContext:
        return self.info.ssl_context()

    async def ra_certificate(self, config_id: str = "scep") -> x509.Certificate:
        return (await self.scep.context(config_id)).ra.current.certificate

    async def ra_fingerprint(self, config_id: str = "scep") -> str:
        return (await self.ra_certificate(config_id)).fingerprint(hashes.SHA256()).hex()

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """The admin API over HTTPS with the dev API key."""
        async with aiohttp.ClientSession() as session:
            async with session.request(method, f"{self.info.https}/admin{path}", json=body, ssl=self.ssl(),
                                       headers={"Authorization": f"Bearer {self.info.api_key}"}) as resp:
                data = await resp.json(content_type=None)
                assert resp.status < 300, (resp.status, data)
                return data

    async def run_meta(self, config_id: str, **extra: Any) -> dict[str, Any]:
        """Keys and configuration of this run, stored with recorded exchanges."""
        ctx = await self.scep.context(config_id)
        ra = ctx.ra.current
        return {
            "config": config_id,
            "settings": ctx.record.settings,
            "ra_certificate": ra.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "ra_key": ra.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode(),
            "ca_chain": "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in ctx.ca_chain),
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
            **extra,
        }


class CoreTables:
    """What SCEP tests read and set up in the core's tables, in one read or transaction
    of the store's query objects each (the adapter itself goes through its door)."""

    def __init__(self, gw: Any) -> None:
        self._store = gw.store

    async def update_protocol_config(self, config_id: str, **fields: Any) -> None:
        async with self._store.transaction() as q:
            await q.configs.update(config_id, **fields)

    async def list_events(self, flt: Any = None, limit: int = 100) -> list[Any]:
        async with self._store.read() as q:
            return list(await q.events.list(flt, limit=limit))

    async def get_end_entity(self, entity_id: str) -> Any:
        async with self._store.read() as q:
            return await q.entities.get(entity_id)

    async def list_end_entities(self, **flt: Any) -> list[Any]:
        async with self._store.read() as q:
            return list(await q.entities.list(**flt))

    async def list_certificates(self, flt: Any = None, limit: int = 100) -> list[Any]:
        async with self._store.read() as q:
            return list(await q.certificates.list(flt, limit=limit))

    async def insert_certificate(self, rec: Any) -> None:
        async with self._store.transaction() as q:
            await q.certificates.insert(rec)

    async def get_request(self, request_id: str) -> Any:
        async with self._store.read() as q:
            return await q.requests.get(request_id)

    async def list_requests(self, **flt: Any) -> list[Any]:
        async with self._store.read() as q:
            return list(await q.requests.list(**flt))

    async def insert_api_key(self, rec: Any) -> None:
        async with self._store.transaction() as q:
            await q.api_keys.insert(rec)


@dataclass
class Recorded:
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes


class Recorder:
    """A pass-through proxy to the gateway's plain-HTTP listener that keeps each exchange."""

    KEEP_HEADERS = ("Content-Type", "User-Agent")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.exchanges: list[Recorded] = []
        self._runner: web.AppRunner | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k in self.KEEP_HEADERS}
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async with session.request(request.method, self.upstream + str(request.rel_url), data=body,
                                       headers=headers) as resp:
                data = await resp.read()
                out_headers = {k: v for k, v in resp.headers.items() if k in ("Content-Type",)}
        self.exchanges.append(Recorded(request.method, str(request.rel_url), headers, body, resp.status,
                                       out_headers, data))
        return web.Response(body=data, status=resp.status, headers=out_headers)

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 22)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def pki_operations(self) -> list[Recorded]:
        return [e for e in self.exchanges if "operation=PKIOperation" in e.path]

    def save(self, name: str, exchange: Recorded, client: str, meta: dict[str, Any]) -> None:
        """Write one exchange to fixtures/scep/ (only when recording is switched on)."""
        if not RECORD:
            return
        save_exchange(FIXTURE_DIR, Exchange(
            name=name, client=client, method=exchange.method, path=exchange.path,
            request_headers=exchange.request_headers, request_body=exchange.request_body,
            response_status=exchange.status, response_headers=exchange.response_headers,
            response_body=exchange.response_body, meta=meta,
        ))


@contextlib.asynccontextmanager
async def served(tmp_path: Path, *, clock: Clock | None = None) -> AsyncIterator[Served]:
    """The gateway on a copy of the session's template; ``clock``: the gateway's own
    (:class:`gateway.clock.FakeClock` in tests that move time), else the system's."""
    data_dir = tmp_path / "data"
    shutil.copytree(await _template(), data_dir)
    async with running_gateway(data_dir, clock=clock) as (gw, info):
        recorder = Recorder(info.http)
        await recorder.start()
        try:
            yield Served(gw, info, recorder)
        finally:
            await recorder.stop()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 120.0) -> Result:
    """A real client as an asyncio subprocess (the gateway keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return Result(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def tool_version(*command: str) -> str:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "unknown"


@dataclass
class Certmonger:
    """certmonger on a private session bus, with its state in a temporary home."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> Certmonger:
        self.home.mkdir(parents=True, exist_ok=True)
        bus = self.home / "bus"
        # Run as root, certmonger keeps its state in /var/lib/certmonger even on a session
        # bus unless told otherwise: every store lives under the test's home.
        state = self.home / "state"
        self.env = {
            "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"), "XDG_RUNTIME_DIR": str(self.home / "run"),
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}",
            "CERTMONGER_CONFIG_DIR": str(state), "CERTMONGER_REQUESTS_DIR": str(state / "requests"),
            "CERTMONGER_CAS_DIR": str(state / "cas"), "CERTMONGER_LOCAL_CA_DIR": str(state / "local"),
            "CERTMONGER_TMPDIR": str(state / "tmp"), "CERTMONGER_SYSTEM_LOCK_FILE": str(state / "lock"),
        }
        for sub in ("run", "state/requests", "state/cas", "state/local", "state/tmp"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        log = open(self.home / "dbus.log", "wb")
        self._procs.append(subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", f"--address=unix:path={bus}"], env=env, stdout=log,
            stderr=subprocess.STDOUT))
        for _ in range(100):
            if bus.exists():
                break
            import time

            time.sleep(0.05)
        cm_log = open(self.home / "certmonger.log", "wb")
        self._procs.append(subprocess.Popen(["certmonger", "-s", "-n", "-d", "2"], env=env, stdout=cm_log,
                                            stderr=subprocess.STDOUT))
        return self

    async def getcert(self, *args: str) -> Result:
        command, rest = args[0], args[1:]
        return await run("getcert", command, "-s", *rest, env=self.env)

    async def status(self, request_id: str) -> str:
        out = (await self.getcert("list", "-i", request_id)).stdout
        for line in out.splitlines():
            if line.strip().startswith("status:"):
                return line.split(":", 1)[1].strip()
        return ""

    async def wait_status(self, request_id: str, wanted: set[str], timeout: float = 60.0) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        status = ""
        while asyncio.get_running_loop().time() < deadline:
            status = await self.status(request_id)
            if status in wanted:
                return status
            await asyncio.sleep(0.3)
        raise AssertionError(f"certmonger request {request_id} stayed {status!r}, not {wanted}: "
                             f"{(self.home / 'certmonger.log').read_text()[-3000:]}")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

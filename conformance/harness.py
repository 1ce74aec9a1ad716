"""Conformance harness: start a real gateway, find real clients, replay recorded exchanges.

- :func:`running_gateway` starts the gateway in this process on free ports (real
  sockets, real TLS); :class:`GatewayProcess` starts it as a subprocess exactly as
  an operator would (``gateway serve``), for clients that need a separate server.
- :func:`require_client` finds a real client binary; when it is missing the suite
  *fails* under ``CI=true`` (CI must install it) and skips elsewhere.
- :func:`load_exchanges` reads recorded request/response pairs from ``fixtures/``
  so real client bytes are checked on every run, even where the client is absent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_CAPTURES = ROOT.parent / "shared" / "captures"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_client(name: str, hint: str = "") -> str:
    """Path of a real client binary; fail under CI=true when missing, skip elsewhere.

    The test interpreter's own bin directory is searched first, so Python clients
    installed with the test extras (certbot) are found in a venv not on PATH.
    """
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path:
        return path
    message = f"real client {name!r} is not installed{': ' + hint if hint else ''}"
    if in_ci():
        pytest.fail(message + " (CI must install it: see .ci/run)")
    pytest.skip(message)
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayInfo:
    """What ``gateway info --json`` says, plus convenience accessors."""

    data: dict[str, Any]
    data_dir: Path

    @property
    def https(self) -> str:
        return str(self.data["https"])

    @property
    def http(self) -> str:
        return str(self.data["http"])

    @property
    def tls_ca(self) -> str:
        return str(self.data["tls_ca"])

    @property
    def api_key(self) -> str:
        return str(self.data["admin"]["api_key"])

    def ca(self, ca_id: str) -> dict[str, Any]:
        return next(c for c in self.data["cas"] if c["id"] == ca_id)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_ca)


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *args]


def run_cli(*args: str, data_dir: Path, check: bool = True, env: dict[str, str] | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``gateway`` CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        gateway_command(*args, "--data-dir", str(data_dir)), capture_output=True, text=True,
        check=check, env=full_env, cwd=ROOT, timeout=300,
        input=input.decode() if input is not None else None,
    )


class GatewayProcess:
    """``gateway serve`` as a subprocess on free ports; stopped with SIGTERM."""

    def __init__(self, data_dir: Path, https_port: int | None = None, http_port: int | None = None,
                 env: dict[str, str] | None = None, auto_workers: int | str = 1) -> None:
        self.data_dir = data_dir
        # what [server] workers = "auto" becomes: tests run one process unless they set
        # workers themselves (tests/test_workers.py covers "auto"); the bench keeps "auto"
        self.auto_workers = auto_workers
        self.https_port = https_port or free_port()
        self.http_port = http_port or free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-serve.log"

    def ports(self) -> list[str]:
        return ["--host", "127.0.0.1", "--https-port", str(self.https_port), "--http-port", str(self.http_port)]

    def pin_ports(self) -> None:
        """Write the chosen ports into config.toml so CLI commands and the server agree
        on the URLs (CDP, OCSP, AIA) they put into certificates."""
        from gateway.config import load_config

        cfg = load_config(self.data_dir).with_overrides("127.0.0.1", self.https_port, self.http_port)
        if cfg.server.workers == "auto":
            cfg.server.workers = self.auto_workers
        cfg.save()

    def start(self, timeout: float = 60.0) -> GatewayInfo:
        if (self.data_dir / "config.toml").exists():
            self.pin_ports()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            gateway_command("serve", "--data-dir", str(self.data_dir), *self.ports()),
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return self.info()
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gateway did not become healthy:\n{self.log_path.read_text()}")

    def info(self) -> GatewayInfo:
        out = run_cli("info", "--json", *self.ports(), data_dir=self.data_dir, env=self.env)
        return GatewayInfo(json.loads(out.stdout), self.data_dir)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> GatewayInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def running_gateway(data_dir: Path, *, clock: Any = None) -> AsyncIterator[tuple[Any, GatewayInfo]]:
    """The gateway in this process on free ports: yields (Gateway, GatewayInfo).
    ``clock``: the gateway's own (a :class:`gateway.clock.FakeClock` in tests that move
    time instead of sleeping), else the system's."""
    from gateway import bootstrap
    from gateway.config import load_config
    from gateway.info import gather_info
    from gateway.runtime import Gateway
    from gateway.web.server import start_listeners

    if not bootstrap.is_initialized(data_dir):
        await bootstrap.initialize(data_dir)
    cfg = load_config(data_dir).with_overrides("127.0.0.1", free_port(), free_port())
    gw = await Gateway.open(cfg) if clock is None else await Gateway.open(cfg, clock=clock)
    listeners = await start_listeners(gw)
    try:
        yield gw, GatewayInfo(await gather_info(cfg), data_dir)
    finally:
        await listeners.stop()
        await gw.close()


# --- recorded exchanges -------------------------------------------------------------
@dataclass
class Exchange:
    """One recorded request/response pair with where it came from."""

    name: str
    client: str
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    response_status: int
    response_headers: dict[str, str]
    response_body: bytes
    meta: dict[str, Any]


def load_exchanges(directory: Path) -> list[Exchange]:
    """Read ``*.json`` exchange files (bodies base64) written by :func:`save_exchange`."""
    out = []
    for path in sorted(Path(directory).glob("*.json")):
        doc = json.loads(path.read_text())
        out.append(
            Exchange(
                name=path.stem, client=doc["client"], method=doc["method"], path=doc["path"],
                request_headers=doc.get("request_headers", {}),
                request_body=base64.b64decode(doc.get("request_body", "")),
                response_status=doc["response_status"],
                response_headers=doc.get("response_headers", {}),
                response_body=base64.b64decode(doc.get("response_body", "")),
                meta=doc.get("meta", {}),
            )
        )
    return out


def save_exchange(directory: Path, exchange: Exchange) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{exchange.name}.json"
    path.write_text(json.dumps({
        "client": exchange.client, "method": exchange.method, "path": exchange.path,
        "request_headers": exchange.request_headers,
        "request_body": base64.b64encode(exchange.request_body).decode(),
        "response_status": exchange.response_status,
        "response_headers": exchange.response_headers,
        "response_body": base64.b64encode(exchange.response_body).decode(),
        "meta": exchange.meta,
    }, indent=2) + "\n")
    return path


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll an async predicate (for eventually-true server state; never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")

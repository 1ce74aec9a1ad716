"""The gateway as a contender: a fresh data directory, bench configurations, ``gateway serve``.

- Initialised with the gateway's own ``gateway init`` code (dev root + EC P-256 issuing
  CA), on SQLite or on a fresh PostgreSQL database ``bench_<random>`` made here and
  dropped afterwards (``[store].url`` in config.toml).
- ACME: a configuration ``bench`` on the issuing CA with ``challenge_validation =
  "always-valid"`` and no rate limits. The always-valid mode only takes effect because
  the server process also gets ``GATEWAY_ACME_UNSAFE_ALWAYS_VALID=bench``.
- SCEP: an RSA issuing CA ``bench-rsa`` (same key type and size as scepserver's CA,
  and as the gateway's RA key) and a configuration ``bench`` on it with a static
  challenge, made with the operator commands ``gateway ca create`` and
  ``gateway scep config create``.
- Served with conformance.harness.GatewayProcess (``gateway serve`` on free ports of
  127.0.0.1).

When a protocol is not (yet) in this tree, or its setup fails, the contender is
reported ``unavailable`` with the reason instead of failing the whole benchmark.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACME_CONFIG = "bench-acme"
SCEP_CONFIG = "bench-scep"
SCEP_CA = "bench-rsa"
ALWAYS_VALID_ENV = "GATEWAY_ACME_UNSAFE_ALWAYS_VALID"
PG_ADMIN_URL = os.environ.get(
    "GATEWAY_BENCH_PG_URL", os.environ.get("GATEWAY_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
)


class Unavailable(Exception):
    """This contender cannot run here (protocol missing, setup failed); the reason is shown."""


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [line for line in text.splitlines() if line.strip()]
    text = lines[-1] if len(lines) > 1 and len(text) > 300 else text
    return text[:300]


def protocol_present(name: str) -> str | None:
    """None when ``protocols.<name>`` exposes an adapter; otherwise why not."""
    try:
        from protocols import adapters

        names = [a.name for a in adapters()]
    except Exception as exc:  # an adapter under construction may not import yet
        return f"protocol adapters do not load: {_short(exc)}"
    return None if name in names else f"protocols/{name} has no adapter in this tree yet"


# --- PostgreSQL -------------------------------------------------------------------------
def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(PG_ADMIN_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new database ``bench_<random>`` on the PostgreSQL server of PG_ADMIN_URL; dropped after."""
    name = f"bench_{secrets.token_hex(6)}"
    try:
        await _pg_execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        raise Unavailable(f"PostgreSQL at {PG_ADMIN_URL.split('@')[-1]} unusable: {_short(exc)}") from None
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(Exception):
            await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- data directory ---------------------------------------------------------------------
async def initialize(data_dir: Path, store_url: str | None = None) -> None:
    """``gateway init`` for ``data_dir``; with ``store_url`` the store is that database.

    ``gateway init`` has no option for the store, so its Config is given the URL
    before it writes config.toml (the file it then reloads and keeps).
    """
    from gateway import bootstrap
    from gateway.config import Config, StoreSettings

    if store_url is None:
        await bootstrap.initialize(data_dir)
        return
    original = bootstrap.Config
    bootstrap.Config = functools.partial(Config, store=StoreSettings(url=store_url))  # type: ignore[misc,assignment]
    try:
        await bootstrap.initialize(data_dir)
    finally:
        bootstrap.Config = original  # type: ignore[misc]


async def add_acme_config(data_dir: Path) -> None:
    from gateway.config import load_config
    from gateway.runtime import Gateway

    gw = await Gateway.open(load_config(data_dir))
    try:
        await gw.authority.create_config(
            ACME_CONFIG, "acme", "issuing", ["tls-server"],
            settings={"challenge_validation": "always-valid", "rate_limits": None},
        )
    finally:
        await gw.close()


def add_scep_config(data_dir: Path, challenge: str, ca_key: str = "RSA-2048") -> None:
    from conformance.harness import run_cli

    run_cli("ca", "create", SCEP_CA, "--name", "Bench RSA Issuing CA", "--parent", "root", "--key", ca_key,
            data_dir=data_dir)
    run_cli("scep", "config", "create", SCEP_CONFIG, "--ca", SCEP_CA, "--profile", "device",
            "--static-challenge", challenge, data_dir=data_dir)


# --- the running gateway -------------------------------------------------------------------
@dataclass
class RunningGateway:
    data_dir: Path
    process: Any  # conformance.harness.GatewayProcess
    info: Any  # conformance.harness.GatewayInfo
    scep_challenge: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        proc = self.process.proc
        return proc.pid if proc is not None else None

    def pids(self) -> list[int]:
        """The serving processes: ``gateway serve`` and, with workers, each worker (their
        CPU is the gateway's CPU)."""
        if self.pid is None:
            return []
        found = re.search(r"worker processes \(pids ([\d, ]+)\)", self.process.log_path.read_text())
        return [self.pid] + ([int(p) for p in found.group(1).split(", ")] if found else [])

    @property
    def https(self) -> str:
        return str(self.info.https)

    @property
    def http(self) -> str:
        return str(self.info.http)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.info.tls_ca))

    @property
    def acme_directory(self) -> str:
        return f"{self.https}/acme/{ACME_CONFIG}/directory"

    @property
    def scep_url(self) -> str:
        return f"{self.http}/scep/{SCEP_CONFIG}"

    def stop(self) -> None:
        self.process.stop()


async def start_gateway(data_dir: Path, *, acme: bool, scep: bool, store_url: str | None = None,
                        env: dict[str, str] | None = None) -> RunningGateway:
    """Initialise, configure and serve; raises Unavailable with the reason on any failure."""
    try:
        from conformance.harness import GatewayProcess
    except ImportError as exc:  # the harness imports pytest (test extras)
        raise Unavailable(f"conformance.harness does not import ({exc}); install the test extras: "
                          "pip install -e '.[test]'") from None

    for name, wanted in (("acme", acme), ("scep", scep)):
        if wanted:
            missing = protocol_present(name)
            if missing:
                raise Unavailable(missing)
    challenge = secrets.token_urlsafe(12) if scep else None
    try:
        await initialize(data_dir, store_url)
        if acme:
            await add_acme_config(data_dir)
        if scep:
            assert challenge is not None
            add_scep_config(data_dir, challenge)
    except Unavailable:
        raise
    except Exception as exc:
        detail = getattr(exc, "stderr", None) or ""
        raise Unavailable(f"gateway set-up failed: {_short(exc)} {str(detail)[-300:]}".strip()) from None
    process_env = dict(env or {})
    if acme:
        process_env[ALWAYS_VALID_ENV] = ACME_CONFIG
    # the default a user gets: [server] workers = "auto" (a worker per core on PostgreSQL)
    process = GatewayProcess(data_dir, env=process_env or None, auto_workers="auto")
    try:
        info = process.start()
    except Exception as exc:
        process.stop()
        raise Unavailable(f"gateway serve failed: {_short(exc)}") from None
    return RunningGateway(data_dir, process, info, challenge)

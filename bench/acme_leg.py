"""The ACME leg: Pebble against the gateway on SQLite and on PostgreSQL, alternating."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from . import pebble as pebble_mod
from .acme_client import AcmeWorker
from .gateway_setup import (
    RunningGateway,
    Unavailable,
    fresh_postgres_database,
    start_gateway,
)
from .legs import Contender, paired_ratio, run_alternating
from .loop import RawRun, Worker
from .settings import Mode
from .stats import median, ratio, rounded
from .tlsutil import client_context
from .verify import Verdict, verify_acme

log = logging.getLogger("bench")


class _AcmeContender(Contender):
    directory = ""
    ssl_context: Any = None

    def workers(self, concurrency: int, tag: str) -> list[Worker]:
        return [AcmeWorker(self.directory, self.ssl_context, f"{tag}-w{i}") for i in range(concurrency)]

    def verify(self, raw: RawRun) -> Verdict:
        return verify_acme(raw.artefacts)

    def extra(self, raw: RawRun) -> dict[str, Any]:
        counts = [a.jws_count for a in raw.artefacts]
        return {"jws_per_cert": rounded(sum(counts) / len(counts), 2) if counts else None}


class PebbleContender(_AcmeContender):
    """A fresh Pebble per run (its store is scanned linearly and it may deadlock)."""

    name = "pebble"

    def __init__(self, workdir: Path) -> None:
        self.pebble = pebble_mod.Pebble(workdir)
        self.version = pebble_mod.version()
        if pebble_mod.binary() is None:
            self.unavailable = "pebble is not installed (Debian package 'pebble')"

    async def before_run(self, concurrency: int) -> None:
        self.directory = self.pebble.start()
        self.ssl_context = client_context(self.pebble.cert)

    async def after_run(self) -> None:
        self.pebble.stop()

    def pids(self) -> list[int]:
        return [self.pebble.pid] if self.pebble.pid else []

    async def close(self) -> None:
        self.pebble.stop()


class GatewayAcmeContender(_AcmeContender):
    """The gateway, one ``gateway serve`` for the whole leg (as it runs in production)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gateway: RunningGateway | None = None

    def attach(self, gateway: RunningGateway) -> None:
        self.gateway = gateway
        self.directory = gateway.acme_directory
        self.ssl_context = gateway.ssl_context()

    def pids(self) -> list[int]:
        return self.gateway.pids() if self.gateway else []


async def run_acme(mode: Mode, workdir: Path) -> dict[str, Any]:
    peer = PebbleContender(workdir / "pebble")
    sqlite = GatewayAcmeContender("gateway_sqlite")
    postgres = GatewayAcmeContender("gateway_postgresql")
    async with contextlib.AsyncExitStack() as stack:
        for contender, use_pg in ((sqlite, False), (postgres, True)):
            try:
                url = await stack.enter_async_context(fresh_postgres_database()) if use_pg else None
                gw = await start_gateway(workdir / contender.name, acme=True, scep=False, store_url=url)
                stack.callback(gw.stop)
                contender.attach(gw)
            except Unavailable as exc:
                contender.unavailable = str(exc)
                log.warning("%s unavailable: %s", contender.name, exc)
        stack.push_async_callback(peer.close)
        per_c = await run_alternating(
            [peer, sqlite, postgres], mode,
            only_at={"gateway_postgresql": mode.postgres_concurrencies},
        )
    for entry in per_c.values():
        peer_entry = entry["pebble"]
        for gw_name, suffix in (("gateway_sqlite", ""), ("gateway_postgresql", "_postgresql")):
            gw_entry = entry[gw_name]
            entry[f"ratio_vs_pebble{suffix}"] = rounded(ratio(gw_entry.get("rate"), peer_entry.get("rate")), 3)
            entry[f"ratio_vs_pebble{suffix}_paired"] = rounded(paired_ratio(
                gw_entry.get("runs_detail", []), peer_entry.get("runs_detail", [])), 3)
            entry[f"p99_ratio_vs_pebble{suffix}"] = rounded(ratio(gw_entry.get("p99_ms"), peer_entry.get("p99_ms")), 3)
    jws = median(per_c[k]["gateway_sqlite"].get("jws_per_cert") for k in per_c)
    return {
        **per_c,
        "pebble_version": peer.version,
        "pebble_env": pebble_mod.ENV,
        "gateway_jws_per_cert": jws,
        "pebble_jws_per_cert": median(per_c[k]["pebble"].get("jws_per_cert") for k in per_c),
        "gateway_ca_key": next((per_c[k]["gateway_sqlite"].get("ca_key") for k in per_c
                                if per_c[k]["gateway_sqlite"].get("ca_key")), None),
    }

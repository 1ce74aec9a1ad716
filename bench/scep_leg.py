"""The SCEP leg: micromdm's scepserver against the gateway, alternating.

Runs inside a private network namespace with only loopback (see :mod:`bench.netns`):
scepserver binds every interface, so it, the gateway and the load generator all live
in that namespace, and nothing listens on the machine's real interfaces. The gateway
therefore uses SQLite here (PostgreSQL on the host is not reachable from inside).

Both servers sign with an RSA-2048 key: scepserver's CA is made with ``-keySize 2048``
(its default is 4096), and the gateway's SCEP configuration sits on an RSA-2048
issuing CA with its RSA-2048 RA. So each enrollment costs both sides one RSA-2048
decryption and two RSA-2048 signatures.

``python -m bench.scep_leg --mode quick --workdir DIR --out result.json``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from cryptography import x509

from . import scepserver as scepserver_mod
from .gateway_setup import RunningGateway, Unavailable, start_gateway
from .legs import Contender, paired_ratio, run_alternating
from .loop import Limits, RawRun, Worker
from .procs import memory
from .scep_load import (
    ScepWorker,
    build_requests,
    device_keys,
    get_ca_certs,
    verify_answers,
)
from .scep_message import Request, recipient
from .settings import FULL, QUICK, Mode
from .stats import ratio, rounded
from .verify import Verdict, key_name

log = logging.getLogger("bench")
DEVICE_KEYS = 48  # > the highest concurrency, so requests in flight never share a key


class _ScepContender(Contender):
    url = ""
    known: list[x509.Certificate]
    challenge = ""

    def __init__(self, keys: list[Any]) -> None:
        self.keys = keys
        self.queue: collections.deque[Request] = collections.deque()
        self.best_rate = 0.0
        self.built = 0
        self.known = []

    def limits(self, mode: Mode, concurrency: int) -> Limits:
        budget = mode.scep_max_ops
        if self.best_rate:
            budget = min(budget, int(self.best_rate * mode.window * 1.5) + 50)
        return Limits(duration=mode.window, max_ops=budget, stall_timeout=mode.stall_timeout)

    def top_up(self, count: int) -> None:
        """Prepare requests (before the window, on every core) until ``count`` are queued."""
        missing = count - len(self.queue)
        if missing > 0:
            self.queue.extend(build_requests(self.keys, missing, f"{self.name}-{self.built}-{secrets.token_hex(2)}",
                                             self.challenge, recipient(self.known)))
            self.built += missing

    def prepare_for(self, mode: Mode, concurrency: int) -> None:
        self.top_up(self.limits(mode, concurrency).max_ops + concurrency)

    def workers(self, concurrency: int, tag: str) -> list[Worker]:
        return [ScepWorker(self.url, self.queue) for _ in range(concurrency)]

    def verify(self, raw: RawRun) -> Verdict:
        if raw.elapsed > 0:
            self.best_rate = max(self.best_rate, len(raw.artefacts) / raw.elapsed)
        return verify_answers(raw.artefacts, self.known)


class ScepServerContender(_ScepContender):
    name = "scepserver"

    def __init__(self, keys: list[Any], workdir: Path, mode: Mode) -> None:
        super().__init__(keys)
        self.mode = mode
        self.challenge = secrets.token_urlsafe(12)
        self.server = scepserver_mod.ScepServer(workdir, self.challenge, key_size=2048)
        self.version = scepserver_mod.version()
        if scepserver_mod.binary() is None:
            self.unavailable = "scepserver is not installed (Debian package 'scep')"

    async def before_run(self, concurrency: int) -> None:
        self.url = self.server.start()
        if not self.known:
            self.known = await get_ca_certs(self.url)
        self.prepare_for(self.mode, concurrency)

    async def after_run(self) -> None:
        self.server.stop()

    def pids(self) -> list[int]:
        return [self.server.pid] if self.server.pid else []

    async def close(self) -> None:
        self.server.stop()


class GatewayScepContender(_ScepContender):
    name = "gateway"

    def __init__(self, keys: list[Any], mode: Mode) -> None:
        super().__init__(keys)
        self.mode = mode
        self.gateway: RunningGateway | None = None

    async def attach(self, gateway: RunningGateway) -> None:
        self.gateway = gateway
        self.url = gateway.scep_url
        self.challenge = gateway.scep_challenge or ""
        self.known = await get_ca_certs(self.url)

    async def before_run(self, concurrency: int) -> None:
        self.prepare_for(self.mode, concurrency)

    def pids(self) -> list[int]:
        return [self.gateway.pid] if self.gateway and self.gateway.pid else []


def _key_names(certs: list[x509.Certificate]) -> dict[str, str]:
    if not certs:
        return {}
    ra = recipient(certs)
    issuer = next((c for c in certs if c is not ra and c.subject == ra.issuer), ra)
    return {"decrypt_and_response_key": key_name(ra.public_key()), "ca_key": key_name(issuer.public_key())}


async def run_scep(mode: Mode, workdir: Path) -> dict[str, Any]:
    keys = device_keys(DEVICE_KEYS)
    peer = ScepServerContender(keys, workdir / "scepserver", mode)
    gateway = GatewayScepContender(keys, mode)
    running: RunningGateway | None = None
    try:
        try:
            running = await start_gateway(workdir / "gateway", acme=False, scep=True)
            await gateway.attach(running)
        except Unavailable as exc:
            gateway.unavailable = str(exc)
        except Exception as exc:  # GetCACert failed: the SCEP endpoint does not work yet
            gateway.unavailable = f"gateway SCEP endpoint unusable: {type(exc).__name__}: {exc}"[:300]
        per_c = await run_alternating([peer, gateway], mode)
        rss = memory(running.pid) if running and running.pid else None
        issued = sum(r["responses"] for e in per_c.values() for r in e["gateway"].get("runs_detail", []))
    finally:
        await peer.close()
        if running is not None:
            running.stop()
    for entry in per_c.values():
        peer_entry, gw_entry = entry["scepserver"], entry["gateway"]
        entry["ratio_vs_scepserver"] = rounded(ratio(gw_entry.get("rate"), peer_entry.get("rate")), 3)
        entry["ratio_vs_scepserver_paired"] = rounded(paired_ratio(
            gw_entry.get("runs_detail", []), peer_entry.get("runs_detail", [])), 3)
        entry["ratio_vs_scepserver_raw"] = rounded(ratio(gw_entry.get("raw_rate"), peer_entry.get("raw_rate")), 3)
        entry["p99_ratio_vs_scepserver"] = rounded(ratio(gw_entry.get("p99_ms"), peer_entry.get("p99_ms")), 3)
    return {
        **per_c,
        "scepserver_version": peer.version,
        "scepserver_keys": _key_names(peer.known),
        "gateway_keys": _key_names(gateway.known),
        "device_key": "RSA-2048",
        "content_encryption": "aes-128-cbc",
        "device_keys_in_pool": DEVICE_KEYS,
        "gateway_rss_after_leg": None if rss is None else {"responses": issued, "rss_bytes": rss.rss_bytes,
                                                           "peak_rss_bytes": rss.peak_rss_bytes},
    }


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scep_leg")
    parser.add_argument("--mode", choices=["quick", "full"], default="quick")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  [scep] %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not scepserver_mod.only_loopback():
        print("refusing to run the SCEP leg outside a loopback-only network namespace", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)  # so finally blocks stop the servers
    mode = QUICK if args.mode == "quick" else FULL
    result = asyncio.run(run_scep(mode, args.workdir))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

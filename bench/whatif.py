"""Measure a proposed gateway change before it is made: baseline vs patched, alternating.

``python -m bench.whatif acme|scep --patch sqlite-normal,secret-cache [--concurrency 8]``

Two fresh gateways (SQLite) run side by side with the benchmark's load generator;
the second one loads bench/whatif_site/sitecustomize.py, which applies the named
patches in its process only. The printed ratio is patched / baseline. Nothing in
the gateway's source changes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .acme_leg import GatewayAcmeContender
from .gateway_setup import RunningGateway, start_gateway
from .legs import Contender, paired_ratio, run_alternating
from .loop import RawRun, Worker
from .scep_load import (
    ScepWorker,
    build_requests,
    device_keys,
    get_ca_certs,
    verify_answers,
)
from .scep_message import Request, recipient
from .settings import Mode
from .stats import ratio, rounded
from .verify import Verdict

SITE = Path(__file__).resolve().parent / "whatif_site"
PATCHES = ("sqlite-normal", "sqlite-one-connection", "secret-cache")


class GatewayScepOnly(Contender):
    """The gateway's SCEP endpoint alone (no scepserver, so no namespace needed)."""

    def __init__(self, name: str, keys: list[Any]) -> None:
        self.name = name
        self.keys = keys
        self.queue: collections.deque[Request] = collections.deque()
        self.gateway: RunningGateway | None = None
        self.known: list[Any] = []

    async def attach(self, gw: RunningGateway) -> None:
        self.gateway = gw
        self.known = await get_ca_certs(gw.scep_url)

    async def before_run(self, concurrency: int) -> None:
        assert self.gateway is not None
        self.queue = collections.deque(build_requests(self.keys, 600 + concurrency, f"{self.name}-{os.getpid()}",
                                                      self.gateway.scep_challenge or "", recipient(self.known)))

    def limits(self, mode: Mode, concurrency: int) -> Any:
        limits = super().limits(mode, concurrency)
        return type(limits)(limits.duration, 600, limits.stall_timeout)

    def workers(self, concurrency: int, tag: str) -> list[Worker]:
        assert self.gateway is not None
        return [ScepWorker(self.gateway.scep_url, self.queue) for _ in range(concurrency)]

    def verify(self, raw: RawRun) -> Verdict:
        return verify_answers(raw.artefacts, self.known)

    def pids(self) -> list[int]:
        return [self.gateway.pid] if self.gateway and self.gateway.pid else []


async def compare(protocol: str, patches: list[str], mode: Mode, workdir: Path) -> dict[str, Any]:
    patched_env = {"PYTHONPATH": os.pathsep.join([str(SITE), os.environ.get("PYTHONPATH", "")]),
                   "BENCH_WHATIF": ",".join(patches)}
    keys = device_keys(40) if protocol == "scep" else []
    contenders: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:
        for name, env in (("baseline", None), ("patched", patched_env)):
            gw = await start_gateway(workdir / name, acme=protocol == "acme", scep=protocol == "scep", env=env)
            stack.callback(gw.stop)
            if protocol == "acme":
                acme = GatewayAcmeContender(name)
                acme.attach(gw)
                contenders.append(acme)
            else:
                scep = GatewayScepOnly(name, keys)
                await scep.attach(gw)
                contenders.append(scep)
        results = await run_alternating(contenders, mode)
    for entry in results.values():
        entry["ratio_patched_vs_baseline"] = rounded(ratio(entry["patched"].get("rate"), entry["baseline"].get("rate")), 3)
        entry["ratio_paired"] = rounded(paired_ratio(entry["patched"].get("runs_detail", []),
                                                     entry["baseline"].get("runs_detail", [])), 3)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whatif")
    parser.add_argument("protocol", choices=["acme", "scep"])
    parser.add_argument("--patch", required=True, help=f"comma-separated, from {', '.join(PATCHES)}")
    parser.add_argument("--concurrency", default="8", help="comma-separated concurrencies")
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    patches = [p.strip() for p in args.patch.split(",") if p.strip()]
    unknown = [p for p in patches if p not in PATCHES]
    if unknown:
        parser.error(f"unknown patch(es) {unknown}")
    logging.basicConfig(level=logging.INFO, format="  %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cs = tuple(int(c) for c in args.concurrency.split(","))
    mode = Mode(name="whatif", window=args.window, repetitions={c: args.repetitions for c in cs}, max_ops=20_000,
                stall_timeout=8.0, postgres_concurrencies=(), memory_checkpoints=(), memory_time_limit=0,
                ceiling_seconds=0, concurrencies=cs)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-whatif-"))
    try:
        results = asyncio.run(compare(args.protocol, patches, mode, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.protocol}, patches {','.join(patches)}: certificates/s (p50/p99 ms), medians of "
          f"{args.repetitions} alternating runs of {args.window:.0f}s")
    for key, entry in results.items():
        b, p = entry["baseline"], entry["patched"]
        print(f"  {key}: baseline {b.get('rate')} ({b.get('p50_ms')}/{b.get('p99_ms')})  patched {p.get('rate')} "
              f"({p.get('p50_ms')}/{p.get('p99_ms')})  ratio {entry['ratio_patched_vs_baseline']} "
              f"(paired {entry['ratio_paired']}); server CPU ms/cert {b.get('server_cpu_ms_per_cert')} -> "
              f"{p.get('server_cpu_ms_per_cert')}; errors {b.get('errors')}/{p.get('errors')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

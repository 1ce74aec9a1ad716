"""The replicas leg: ACME throughput with 1, 2 and 3 replicas on PostgreSQL behind
haproxy, and 1 replica with 2 workers, side by side in one run.

Every contender is the same deployment as ``conformance/replicas`` (its Cluster: one
data directory copied per replica, haproxy in TCP mode with health checks), each on a
database of its own, all started before the first window and measured in alternating
order (A B C D, D C B A, ...). The load is ACME at concurrency 8 (full RFC 8555 flow,
challenges always valid). On a 2-core machine replicas share the cores with each other,
PostgreSQL, haproxy and the load generator, so the throughput ratio to one replica is
bounded by the cores; server CPU per certificate (every gateway process of the
contender) shows the cost that would scale out on separate hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from .acme_client import AcmeError, AcmeWorker
from .gateway_setup import ACME_CONFIG, Unavailable, add_acme_config, fresh_postgres_database
from .procs import cpu_seconds
from .settings import Mode
from .stats import median

CONCURRENCY = 8
CONTENDERS = (("1 replica", 1, 1), ("2 replicas", 2, 1), ("3 replicas", 3, 1), ("1 replica x 2 workers", 1, 2))


class _Contender:
    def __init__(self, name: str, replicas: int, workers: int, work: Path) -> None:
        from conformance.replicas.cluster import Cluster
        from protocols.acme.settings import ALWAYS_VALID_ENV

        self.name, self.workers = name, workers
        self.cluster = Cluster(work, None, replicas, env={ALWAYS_VALID_ENV: ACME_CONFIG}, balanced=True)
        self.runs: list[dict[str, float]] = []

    async def start(self, store_url: str) -> None:
        self.cluster.store_url = store_url
        await self.cluster.start()
        data_dir = self.cluster.replicas[0].data_dir
        await add_acme_config(data_dir)
        for replica in self.cluster.replicas:  # always: "auto" would start a worker per core on PostgreSQL
            cfg = replica.data_dir / "config.toml"
            cfg.write_text(re.sub(r"(?m)^workers = .*$", f"workers = {self.workers}", cfg.read_text()))
        await asyncio.to_thread(self.cluster.serve)
        info = self.cluster.info_now()
        self.directory = f"{info.https}/acme/{ACME_CONFIG}/directory"
        self.ssl = ssl.create_default_context(cafile=info.tls_ca)

    def pids(self) -> list[int]:
        pids = []
        for replica in self.cluster.replicas:
            if replica.proc is None:
                continue
            pids.append(replica.proc.pid)
            found = re.search(r"worker processes \(pids ([\d, ]+)\)", replica.log_path.read_text())
            if found:
                pids += [int(p) for p in found.group(1).split(", ")]
        return pids

    async def run(self, window: float) -> dict[str, float]:
        workers = [AcmeWorker(self.directory, self.ssl, f"{self.name.replace(' ', '')}-{i}-{time.monotonic_ns()}")
                   for i in range(CONCURRENCY)]
        await asyncio.gather(*(w.setup() for w in workers))
        pids = self.pids()
        cpu_before = sum(cpu_seconds(p) or 0.0 for p in pids)
        done = errors = 0
        deadline = time.monotonic() + window

        async def loop(worker: AcmeWorker) -> None:
            nonlocal done, errors
            index = 0
            while time.monotonic() < deadline:
                try:
                    issued = await worker.issue(index)
                    x509.load_pem_x509_certificates(issued.chain_pem)
                    done += 1
                except (AcmeError, OSError, ValueError):
                    errors += 1
                index += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(w) for w in workers))
        elapsed = time.monotonic() - started
        cpu = sum(cpu_seconds(p) or 0.0 for p in pids) - cpu_before
        await asyncio.gather(*(w.close() for w in workers))
        figures = {"certs_per_s": done / elapsed, "errors": float(errors),
                   "server_cpu_ms_per_cert": 1000 * cpu / done if done else float("nan")}
        self.runs.append(figures)
        return figures

    def summary(self) -> dict[str, Any]:
        return {key: round(median([r[key] for r in self.runs]) or 0.0, 2) for key in self.runs[0]} if self.runs else {}

    def stop(self) -> None:
        self.cluster.stop()


async def run_replicas(mode: Mode, workdir: Path) -> dict[str, Any]:
    repetitions = max(1, mode.repetitions.get(CONCURRENCY, 1) - 2)
    contenders = [_Contender(name, n, w, workdir / name.replace(" ", "-")) for name, n, w in CONTENDERS]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for contender in contenders:
                url = await stack.enter_async_context(fresh_postgres_database())
                await contender.start(url)
            for rep in range(repetitions):
                order = contenders if rep % 2 == 0 else list(reversed(contenders))
                for contender in order:
                    await contender.run(mode.window)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    except AssertionError as exc:  # haproxy missing or a replica that would not start
        return {"status": "unavailable", "reason": str(exc)[:300]}
    finally:
        for contender in contenders:
            contender.stop()
    out: dict[str, Any] = {"concurrency": CONCURRENCY, "repetitions": repetitions, "window_s": mode.window}
    base = contenders[0].summary().get("certs_per_s")
    for contender in contenders:
        summary = contender.summary()
        if base and summary.get("certs_per_s") is not None:
            summary["ratio_vs_1_replica"] = round(summary["certs_per_s"] / base, 2)
        out[contender.name] = summary
    return out


def render(result: dict[str, Any]) -> list[str]:
    if result.get("status") == "unavailable":
        return [f"\nReplicas: unavailable: {result.get('reason')}"]
    lines = [f"\nReplicas on PostgreSQL behind haproxy, ACME c{result['concurrency']} "
             f"(median of {result['repetitions']} alternating runs of {result['window_s']:.0f}s)",
             f"  {'':26}{'certs/s':>10}{'ratio':>8}{'server CPU ms/cert':>20}{'errors':>8}"]
    for name, _, _ in CONTENDERS:
        row = result.get(name) or {}
        lines.append(f"  {name:26}{row.get('certs_per_s', float('nan')):>10.1f}"
                     f"{row.get('ratio_vs_1_replica', float('nan')):>8.2f}"
                     f"{row.get('server_cpu_ms_per_cert', float('nan')):>20.1f}{row.get('errors', 0):>8.0f}")
    lines.append("  (2 cores shared by every replica, PostgreSQL, haproxy and the load generator: the "
                 "throughput ratio is bounded by the cores; CPU per certificate is what scales out)")
    return lines

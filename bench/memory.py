"""Memory: the gateway's resident set after N ACME issuances, and how it grows with N.

A fresh ``gateway serve`` (SQLite) issues certificates at concurrency 8 in steps up
to each checkpoint; after each step its VmRSS and VmHWM (peak) are read from /proc.
A server whose memory is flat in N shows a growth per issuance near zero once its
fixed-size caches are warm.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .acme_client import AcmeWorker
from .gateway_setup import Unavailable, start_gateway
from .loop import Limits, timed_run
from .procs import memory
from .stats import rounded
from .verify import verify_acme

log = logging.getLogger("bench")
CONCURRENCY = 8
PLATEAU_FROM = 10_000
"""Issuances after which growth is measured (fixed-size caches and windows are full)."""


async def run_memory(workdir: Path, checkpoints: Sequence[int], time_limit: float,
                     stall_timeout: float = 6.0) -> dict[str, Any]:
    try:
        gw = await start_gateway(workdir / "gateway_memory", acme=True, scep=False)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    points: list[dict[str, Any]] = []
    deadline = time.monotonic() + time_limit
    issued = valid = 0
    status = "ok"
    try:
        assert gw.pid is not None
        start = memory(gw.pid)
        points.append({"issued": 0, "rss_bytes": start.rss_bytes if start else None,
                       "peak_rss_bytes": start.peak_rss_bytes if start else None})
        for step, target in enumerate(sorted(checkpoints)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = "time limit reached"
                break
            workers = [AcmeWorker(gw.acme_directory, gw.ssl_context(), f"mem-{step}-w{i}")
                       for i in range(CONCURRENCY)]
            raw = await timed_run(workers, Limits(duration=remaining, max_ops=target - issued,
                                                  stall_timeout=stall_timeout, warmup_per_worker=0),
                                  lambda: [gw.pid] if gw.pid else [])
            issued += len(raw.artefacts)
            valid += verify_acme(raw.artefacts).valid_unique
            mem = memory(gw.pid)
            points.append({"issued": issued, "rss_bytes": mem.rss_bytes if mem else None,
                           "peak_rss_bytes": mem.peak_rss_bytes if mem else None,
                           "errors": raw.error_count})
            log.info("memory: %d issued, RSS %.1f MiB", issued, (mem.rss_bytes if mem else 0) / 2**20)
            if raw.stalled:
                status = "stalled"
                break
            if issued < target:
                status = "time limit reached"
                break
    finally:
        gw.stop()
    growth = None
    measured = [p for p in points[1:] if p["rss_bytes"] is not None]
    # from PLATEAU_FROM issuances on when there is a later point (caches are warm by then),
    # else from the first checkpoint
    later = [p for p in measured if p["issued"] >= PLATEAU_FROM]
    base = later[0] if len(later) >= 2 else (measured[0] if measured else None)
    if base is not None and measured[-1]["issued"] > base["issued"]:
        growth = (measured[-1]["rss_bytes"] - base["rss_bytes"]) / (measured[-1]["issued"] - base["issued"])
    return {
        "status": status,
        "protocol": "acme",
        "store": "sqlite",
        "concurrency": CONCURRENCY,
        "checkpoints": points,
        "valid_unique": valid,
        "growth_bytes_per_issuance": rounded(growth, 1),
        "growth_from_issued": base["issued"] if growth is not None and base is not None else None,
        "peak_rss_bytes": max((p["peak_rss_bytes"] or 0) for p in points) or None,
    }

"""Contenders and the alternating schedule that measures them side by side.

For each concurrency, repetition r runs every contender once, in turn, in the order
given for even r and reversed for odd r (A B, B A, ...), so slow drift of the machine
(other work on the shared cores, caches, disk) spreads over both sides evenly. Each
run is summarised after its artefacts are verified; a contender's figure is the
median over its runs.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from .loop import Limits, RawRun, Worker, timed_run
from .settings import Mode
from .stats import median, percentile, ratio, rounded
from .verify import Verdict

log = logging.getLogger("bench")


class Contender:
    """One server under test. Subclasses start it, make workers and verify answers."""

    name = "contender"
    unavailable: str | None = None
    version: str | None = None

    async def before_run(self, concurrency: int) -> None:
        """Called before each run (Pebble: a fresh process)."""

    async def after_run(self) -> None:
        """Called after each run's window, before verification."""

    def workers(self, concurrency: int, tag: str) -> list[Worker]:
        raise NotImplementedError

    def limits(self, mode: Mode, concurrency: int) -> Limits:
        return Limits(duration=mode.window, max_ops=mode.max_ops, stall_timeout=mode.stall_timeout)

    def verify(self, raw: RawRun) -> Verdict:
        raise NotImplementedError

    def extra(self, raw: RawRun) -> dict[str, Any]:
        return {}

    def pids(self) -> list[int]:
        return []

    async def close(self) -> None:
        """Stop whatever the contender started."""


def summarize(raw: RawRun, verdict: Verdict, extra: dict[str, Any]) -> dict[str, Any]:
    elapsed = raw.elapsed
    good = verdict.valid_unique
    per_cert = max(1, len(raw.artefacts))
    return {
        "rate": rounded(good / elapsed if elapsed > 0 else 0.0, 2),
        "raw_rate": rounded(len(raw.artefacts) / elapsed if elapsed > 0 else 0.0, 2),
        "valid_unique": good,
        "responses": len(raw.artefacts),
        "errors": raw.error_count,
        "invalid": verdict.invalid,
        "duplicate_serial": verdict.duplicate_serial,
        "elapsed_s": rounded(elapsed, 3),
        "p50_ms": rounded(None if not raw.latencies else percentile(raw.latencies, 50) * 1000, 1),  # type: ignore[operator]
        "p99_ms": rounded(None if not raw.latencies else percentile(raw.latencies, 99) * 1000, 1),  # type: ignore[operator]
        "stalled": raw.stalled,
        "stalled_phase": raw.stalled_phase,
        "server_cpu_ms_per_cert": rounded(raw.server_cpu / per_cert * 1000 if raw.server_cpu is not None
                                          and raw.artefacts else None, 2),
        "client_cpu_ms_per_cert": rounded(raw.client_cpu / per_cert * 1000 if raw.artefacts else None, 2),
        "ca_key": verdict.ca_key,
        "reasons": verdict.as_dict()["reasons"],
        "error_samples": raw.error_samples[:3],
        **extra,
    }


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A contender's figure at one concurrency: medians over its runs."""
    if not runs:
        return {"status": "no runs"}
    rates = [r["rate"] for r in runs]
    stalled = sum(1 for r in runs if r["stalled"])
    out = {
        "status": "stalled" if stalled == len(runs) else "ok",
        "rate": rounded(median(rates), 2),
        "raw_rate": rounded(median(r["raw_rate"] for r in runs), 2),
        "rate_min": min(rates),
        "rate_max": max(rates),
        "p50_ms": rounded(median(r["p50_ms"] for r in runs), 1),
        "p99_ms": rounded(median(r["p99_ms"] for r in runs), 1),
        "runs": len(runs),
        "stalled_runs": stalled,
        "errors": sum(r["errors"] for r in runs),
        "invalid": sum(r["invalid"] for r in runs),
        "duplicate_serial": sum(r["duplicate_serial"] for r in runs),
        "server_cpu_ms_per_cert": rounded(median(r["server_cpu_ms_per_cert"] for r in runs), 2),
        "client_cpu_ms_per_cert": rounded(median(r["client_cpu_ms_per_cert"] for r in runs), 2),
        "ca_key": next((r["ca_key"] for r in runs if r["ca_key"]), None),
    }
    if any("jws_per_cert" in r for r in runs):
        out["jws_per_cert"] = rounded(median(r.get("jws_per_cert") for r in runs), 2)
    return out


async def run_alternating(contenders: Sequence[Contender], mode: Mode,
                          concurrencies: Sequence[int] | None = None,
                          only_at: dict[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Every available contender at every concurrency, alternating; returns per-concurrency
    ``{"c8": {name: aggregate + "runs_detail"}}``. ``only_at`` limits a contender to some
    concurrencies (PostgreSQL in quick mode)."""
    results: dict[str, Any] = {}
    for c in concurrencies or mode.concurrencies:
        runs: dict[str, list[dict[str, Any]]] = {k.name: [] for k in contenders}
        eligible = [k for k in contenders if k.unavailable is None
                    and (only_at is None or k.name not in only_at or c in only_at[k.name])]
        for rep in range(mode.repetitions.get(c, 1)):
            order = eligible if rep % 2 == 0 else list(reversed(eligible))
            for k in order:
                summary = await run_once(k, mode, c, rep)
                summary["repetition"] = rep
                runs[k.name].append(summary)
                log.info("%s c%d rep %d: %.1f/s (p99 %s ms)%s", k.name, c, rep, summary["rate"],
                         summary["p99_ms"], " STALLED" if summary["stalled"] else "")
        entry: dict[str, Any] = {}
        for k in contenders:
            if k.unavailable is not None:
                entry[k.name] = {"status": "unavailable", "reason": k.unavailable}
            elif not runs[k.name]:
                entry[k.name] = {"status": "not run at this concurrency"}
            else:
                entry[k.name] = {**aggregate(runs[k.name]), "runs_detail": runs[k.name]}
        results[f"c{c}"] = entry
    return results


async def run_once(k: Contender, mode: Mode, concurrency: int, rep: int) -> dict[str, Any]:
    tag = f"{k.name.replace('_', '')}-c{concurrency}-r{rep}-{secrets.token_hex(3)}"
    try:
        await k.before_run(concurrency)
    except Exception as exc:
        log.warning("%s could not start a run: %s", k.name, exc)
        failed = RawRun(concurrency=concurrency, error_count=1, error_samples=[f"start: {exc}"[:300]])
        return summarize(failed, Verdict(), {})
    try:
        raw = await timed_run(k.workers(concurrency, tag), k.limits(mode, concurrency), k.pids)
    finally:
        await k.after_run()
    return summarize(raw, k.verify(raw), k.extra(raw))


def paired_ratio(gateway_runs: Sequence[dict[str, Any]], peer_runs: Sequence[dict[str, Any]]) -> float | None:
    """Median over repetitions of (gateway rate / peer rate) within the same repetition."""
    by_rep = {r["repetition"]: r["rate"] for r in peer_runs}
    return median(ratio(r["rate"], by_rep.get(r["repetition"])) for r in gateway_runs)

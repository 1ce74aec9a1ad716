"""``python -m bench [--quick]``: every benchmark, a table on stdout, bench/results/latest.json.

Legs, in order: ACME (Pebble vs the gateway on SQLite and PostgreSQL), SCEP
(scepserver vs the gateway, in a private network namespace), memory (gateway RSS vs
issuances), and the crypto ceiling of each protocol. A leg that cannot run here is
reported ``unavailable`` with its reason; the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import ceiling, netns
from .report import fraction_of_ceiling, goals, render
from .settings import FULL, QUICK, Mode

RESULTS = Path(__file__).resolve().parent / "results"
LEGS = ("acme", "scep", "est", "memory", "hsm", "replicas", "ceiling")
log = logging.getLogger("bench")


def _versions() -> dict[str, Any]:
    import aiohttp
    import cryptography

    from . import pebble, scepserver

    return {"python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "cryptography": cryptography.__version__, "pebble": pebble.version(), "scep": scepserver.version()}


def _scep_leg(mode: Mode, workdir: Path) -> dict[str, Any]:
    try:
        netns.probe()
    except netns.NamespaceUnavailable as exc:
        return {"status": "unavailable", "reason": f"no private network namespace: {exc}"}
    out = workdir / "scep-result.json"
    try:
        code = netns.run_module("bench.scep_leg", ["--mode", mode.name, "--workdir", str(workdir / "scep"),
                                                   "--out", str(out)], timeout=3600 if mode is FULL else 600)
    except Exception as exc:  # a timeout or a crash of the leg must not lose the others
        return {"status": "unavailable", "reason": f"SCEP leg failed: {type(exc).__name__}: {exc}"[:300]}
    if code != 0 or not out.exists():
        return {"status": "unavailable", "reason": f"SCEP leg exited with status {code}"}
    return json.loads(out.read_text())


async def _run(mode: Mode, legs: set[str], workdir: Path) -> dict[str, Any]:
    from .acme_leg import run_acme
    from .memory import run_memory

    result: dict[str, Any] = {}
    if "acme" in legs:
        log.info("ACME leg")
        result["acme"] = await run_acme(mode, workdir / "acme")
    if "scep" in legs:
        log.info("SCEP leg (private network namespace)")
        result["scep"] = await asyncio.to_thread(_scep_leg, mode, workdir)
    if "est" in legs:
        from .est_leg import run_est

        log.info("EST leg (against the crypto ceiling)")
        result["est"] = await run_est(mode, workdir / "est")
    if "memory" in legs:
        log.info("memory leg")
        result["memory"] = await run_memory(workdir / "memory", mode.memory_checkpoints, mode.memory_time_limit,
                                            mode.stall_timeout)
    if "hsm" in legs:
        from .hsm_leg import run_hsm

        log.info("PKCS#11 leg (SoftHSM2)")
        result["hsm"] = await asyncio.to_thread(run_hsm, mode.ceiling_seconds, workdir / "hsm")
    if "replicas" in legs:
        from .replicas_leg import run_replicas

        log.info("replicas leg (PostgreSQL, haproxy)")
        result["replicas"] = await run_replicas(mode, workdir / "replicas")
    if "ceiling" in legs:
        log.info("crypto ceiling")
        result["ceiling"] = measure_ceilings(mode, result)
        for proto in ("acme", "scep"):
            leg = result.get(proto)
            if leg and leg.get("status") != "unavailable":
                contender = "gateway_sqlite" if proto == "acme" else "gateway"
                leg.update(fraction_of_ceiling(leg, contender, result["ceiling"].get(proto)))
    return result


def measure_ceilings(mode: Mode, result: dict[str, Any]) -> dict[str, Any]:
    """Per protocol, with the key types and the JWS count the gateway legs really used
    (the gateway's defaults where a leg did not run)."""
    acme = result.get("acme") or {}
    jws = acme.get("gateway_jws_per_cert") or acme.get("pebble_jws_per_cert") or 5
    ca_key = acme.get("gateway_ca_key") or "EC-P256"
    scep_keys = (result.get("scep") or {}).get("gateway_keys") or {}
    ra_key = scep_keys.get("decrypt_and_response_key") or "RSA-2048"
    scep_ca = scep_keys.get("ca_key") or "RSA-2048"
    out: dict[str, Any] = {}
    for proto, ops in (("acme", ceiling.acme_operations(round(jws), ca_key)),
                       ("scep", ceiling.scep_operations(ra_key, scep_ca))):
        out[proto] = ceiling.measure(ops, mode.ceiling_seconds).as_dict()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (< 5 minutes on 2 cores)")
    parser.add_argument("--only", help=f"comma-separated legs to run (default: all of {','.join(LEGS)})")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON results file")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, data dirs)")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="measure nothing: print a saved results file's table, its goals recomputed")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())
        saved["goals"] = goals(saved)
        print(render(saved))
        return 0
    legs = set(LEGS) if not args.only else {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = legs - set(LEGS)
    if unknown:
        parser.error(f"unknown leg(s) {sorted(unknown)}; choose from {','.join(LEGS)}")
    mode = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.INFO, format="  %(relativeCreated)6.0fms %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started = time.monotonic()
    load_before = os.getloadavg()
    meta: dict[str, Any] = {
        "mode": mode.name, "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(), "platform": platform.platform(), "versions": _versions(),
        "legs": sorted(legs), "window_s": mode.window, "repetitions": mode.repetitions,
        "caveat": "absolute figures depend on this machine and on whatever else ran on it; every ratio is "
                  "against a peer measured in the same run (alternating runs, medians)",
    }
    try:
        result = asyncio.run(_run(mode, legs, workdir))
    finally:
        if args.keep:
            print(f"working directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    meta.update(duration_s=round(time.monotonic() - started, 1), load_before=load_before, load_after=os.getloadavg())
    result = {"meta": meta, **result}
    result["goals"] = goals(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(render(result))
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark against real servers: Pebble, micromdm's scepserver (in a private network
namespace) and the gateway itself, with tiny bounded runs (no timing is asserted)."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import gateway_setup, netns
from bench.acme_client import AcmeWorker
from bench.acme_leg import run_acme
from bench.gateway_setup import start_gateway
from bench.loop import Limits, timed_run
from bench.scep_load import (
    ScepWorker,
    build_requests,
    device_keys,
    get_ca_certs,
    verify_answers,
)
from bench.scep_message import recipient
from bench.scepserver import ScepServer
from bench.settings import Mode
from bench.verify import verify_acme
from conformance.harness import require_client, in_ci

TINY = Mode(name="test", window=1.0, repetitions={2: 1}, max_ops=30, stall_timeout=8.0, postgres_concurrencies=(2,),
            memory_checkpoints=(), memory_time_limit=0, ceiling_seconds=0, concurrencies=(2,))


async def test_pebble_leg_runs_and_gateway_legs_report_unavailable_when_acme_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a protocol lands the peer still runs; the gateway columns say why they are empty."""
    require_client("pebble", "Debian package pebble")
    monkeypatch.setattr(gateway_setup, "protocol_present", lambda name: f"protocols/{name} is not here (test)")
    result = await run_acme(TINY, tmp_path)
    peer = result["c2"]["pebble"]
    assert peer["status"] in ("ok", "stalled")
    assert peer["runs"] == 1 and peer["runs_detail"][0]["valid_unique"] > 0
    assert peer["invalid"] == 0 and peer["duplicate_serial"] == 0
    assert peer["ca_key"] == "RSA-2048"
    for name in ("gateway_sqlite", "gateway_postgresql"):
        assert result["c2"][name]["status"] == "unavailable"
        assert result["c2"][name]["reason"]
    assert result["c2"]["ratio_vs_pebble"] is None


async def test_gateway_acme_issues_certificates_the_benchmark_verifies(tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path / "gw", acme=True, scep=False)
    try:
        workers = [AcmeWorker(gw.acme_directory, gw.ssl_context(), f"t{i}") for i in range(2)]
        run = await timed_run(workers, Limits(duration=60, max_ops=4, stall_timeout=20), lambda: [gw.pid])
    finally:
        gw.stop()
    assert run.error_samples == [] and len(run.artefacts) == 4
    verdict = verify_acme(run.artefacts)
    assert verdict.valid_unique == 4 and verdict.ca_key == "EC-P256"
    assert all(a.jws_count >= 5 for a in run.artefacts)


async def test_gateway_scep_answers_verify_with_the_device_key(tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path / "gw", acme=False, scep=True)
    try:
        known = await get_ca_certs(gw.scep_url)
        queue = collections.deque(build_requests(device_keys(2), 4, "t", gw.scep_challenge or "", recipient(known)))
        wrong = build_requests(device_keys(1), 1, "bad", "not-the-challenge", recipient(known))
        run = await timed_run([ScepWorker(gw.scep_url, queue)], Limits(duration=60, max_ops=3, stall_timeout=20))
        queue.extend(wrong)
        refused = await timed_run([ScepWorker(gw.scep_url, queue)],
                                  Limits(duration=60, max_ops=1, stall_timeout=20, warmup_per_worker=0))
    finally:
        gw.stop()
    assert len(run.artefacts) == 3
    verdict = verify_answers(run.artefacts, known)
    assert verdict.valid_unique == 3 and verdict.ca_key == "RSA-2048"
    bad = verify_answers(refused.artefacts, known)
    assert bad.valid_unique == 0 and bad.invalid == 1
    assert any("pkiStatus 2" in reason for reason in bad.reasons)


def test_scepserver_refuses_to_run_on_the_machines_interfaces(tmp_path: Path) -> None:
    require_client("scepserver", "Debian package scep")
    with pytest.raises(RuntimeError, match="namespace"):
        ScepServer(tmp_path, "challenge-1").start()


def test_scepserver_enrolls_inside_a_private_network_namespace(tmp_path: Path) -> None:
    require_client("scepserver", "Debian package scep")
    try:
        netns.probe()
    except netns.NamespaceUnavailable as exc:
        if in_ci():
            pytest.fail(f"no private network namespace here: {exc}")
        pytest.skip(f"no private network namespace here: {exc}")
    script = textwrap.dedent(f"""
        import asyncio, collections, json
        from pathlib import Path
        from bench.loop import Limits, timed_run
        from bench.scep_load import ScepWorker, build_requests, device_keys, get_ca_certs, verify_answers
        from bench.scep_message import recipient
        from bench.scepserver import ScepServer

        async def main():
            server = ScepServer(Path({str(tmp_path)!r}), "challenge-1")
            url = server.start()
            try:
                known = await get_ca_certs(url)
                queue = collections.deque(build_requests(device_keys(2), 5, "ns", "challenge-1", recipient(known)))
                run = await timed_run([ScepWorker(url, queue)], Limits(duration=60, max_ops=4, stall_timeout=20))
            finally:
                server.stop()
            v = verify_answers(run.artefacts, known)
            print(json.dumps({{"valid": v.valid_unique, "invalid": v.invalid, "ca_key": v.ca_key,
                              "errors": run.error_samples}}))
        asyncio.run(main())
    """)
    out = subprocess.run(netns.command([sys.executable, "-c", script]), capture_output=True, text=True, check=False,
                         timeout=120, cwd=netns.ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"valid": 4, "invalid": 0, "ca_key": "RSA-2048", "errors": []}

"""`gateway serve` with [server] workers > 1: processes sharing the listeners, as replicas."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from conformance.acme.support import RawClient
from conformance.harness import GatewayProcess, run_cli

from .conftest import fresh_pg_database
from gateway import bootstrap
from gateway.config import AUTO_WORKERS_MAX, Config, ServerSettings, StoreSettings, load_config
from gateway.errors import ConfigError
from gateway.runtime import Gateway


def _init(tmp_path: Path, workers: int, replicas: str = "auto") -> Path:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    cfg = load_config(data_dir)
    assert cfg.server.workers == "auto" and cfg.store.replicas == "auto"
    cfg.server.workers, cfg.store.replicas = workers, replicas
    cfg.save()
    return data_dir


def _worker_pids(proc: GatewayProcess) -> list[int]:
    match = re.search(r"worker processes \(pids ([\d, ]+)\)", proc.log_path.read_text())
    assert match, proc.log_path.read_text()[-2000:]
    return [int(p) for p in match.group(1).split(", ")]


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not its parent any more is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _gone(pids: list[int], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_workers_share_the_listeners_and_stop_together(tmp_path: Path) -> None:
    proc = GatewayProcess(_init(tmp_path, workers=2))
    info = proc.start()
    try:
        pids = _worker_pids(proc)
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        seen: set[int] = set()
        for _ in range(100):  # a new connection each time: the kernel picks the process
            with urllib.request.urlopen(f"{info.http}/healthz", timeout=5) as resp:
                seen.add(json.loads(resp.read())["worker"])
            if seen == {0, 1}:
                break
        assert seen == {0, 1}
    finally:
        code = proc.stop()
    assert code == 0
    assert _gone(pids)


def test_a_worker_that_dies_stops_the_service(tmp_path: Path) -> None:
    proc = GatewayProcess(_init(tmp_path, workers=2))
    proc.start()
    try:
        pids = _worker_pids(proc)
        os.kill(pids[0], signal.SIGKILL)
        assert proc.proc is not None
        proc.proc.wait(timeout=30)  # the parent notices and stops the other worker
        assert proc.proc.returncode not in (0, None)
        assert _gone(pids)
        assert f"worker {pids[0]} exited" in proc.log_path.read_text()
    finally:
        proc.stop()


def test_workers_stop_when_the_parent_is_killed_and_a_restart_binds_the_ports(tmp_path: Path) -> None:
    """kill -9 of ``gateway serve`` leaves no orphan serving with parent pid 1: the workers
    see their parent pipe close (and get the parent death signal) and stop, so the same
    command started again binds the same ports, and removes the counters directory the
    killed one left (``run/metrics-<pid>`` in the data directory); a clean stop removes
    its own."""
    data_dir = _init(tmp_path, workers=2)
    proc = GatewayProcess(data_dir)
    info = proc.start()
    try:
        pids = _worker_pids(proc)
        assert proc.proc is not None
        left = data_dir / "run" / f"metrics-{proc.proc.pid}"
        assert left.is_dir()
        proc.proc.kill()  # SIGKILL: the parent cannot forward anything
        proc.proc.wait(timeout=10)
        assert _gone(pids, timeout=30), [p for p in pids if _alive(p)]
        log = proc.log_path.read_text()
        assert "parent) is gone; this worker stops" in log or "shutting down" in log, log[-2000:]
        proc.proc = None
        again = GatewayProcess(data_dir, https_port=proc.https_port, http_port=proc.http_port)
        assert left.is_dir()  # kill -9: nothing could remove it
        again.start()
        try:
            with urllib.request.urlopen(f"{info.http}/healthz", timeout=5) as resp:
                assert json.loads(resp.read())["status"] == "ok"
            assert "Address already in use" not in again.log_path.read_text()
            assert not left.exists()  # removed by the next serve
            assert again.proc is not None
            assert [d.name for d in (data_dir / "run").iterdir()] == [f"metrics-{again.proc.pid}"]
        finally:
            assert again.stop() == 0
        assert list((data_dir / "run").iterdir()) == []
    finally:
        proc.stop()


async def test_any_worker_accepts_a_nonce_another_issued(tmp_path: Path) -> None:
    """Workers imply replicas: nonces are recorded in the store, so a client whose
    connections land on different workers never sees badNonce."""
    data_dir = _init(tmp_path, workers=2)
    cfg = load_config(data_dir)
    assert cfg.store_has_replicas
    gw = await Gateway.open(cfg)
    try:
        await gw.authority.create_config("multi", "acme", "issuing", ["tls-server"])
    finally:
        await gw.close()
    proc = GatewayProcess(data_dir)
    info = await asyncio.to_thread(proc.start)
    try:
        async with RawClient(info, "multi") as client:
            await client.session.close()  # type: ignore[union-attr]
            client.session = aiohttp.ClientSession(  # a new connection, and so any worker, per request
                connector=aiohttp.TCPConnector(ssl=info.ssl_context(), force_close=True))
            assert (await client.register()).status == 201
            statuses = [(await client.post(client.kid, None)).status for _ in range(16)]
        assert statuses == [200] * 16
    finally:
        await asyncio.to_thread(proc.stop)


@pytest.mark.parametrize("value", ["0", "65"])
def test_worker_count_is_checked(tmp_path: Path, value: str) -> None:
    out = run_cli("serve", "--workers", value, data_dir=tmp_path / "data", check=False)
    assert out.returncode != 0 and "--workers must be from 1 to 64" in out.stderr


PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def test_auto_workers_is_one_on_sqlite_and_one_per_core_on_postgresql(tmp_path: Path) -> None:
    per_core = max(1, min(os.cpu_count() or 1, AUTO_WORKERS_MAX))
    assert Config(data_dir=tmp_path).worker_count == 1  # the embedded SQLite default
    on_pg = Config(data_dir=tmp_path, store=StoreSettings(url=PG))
    assert on_pg.worker_count == per_core and on_pg.store_has_replicas
    assert Config(data_dir=tmp_path, store=StoreSettings(url=PG), server=ServerSettings(workers=1)).worker_count == 1
    three = Config(data_dir=tmp_path, server=ServerSettings(workers=3))
    assert three.worker_count == 3 and three.store_has_replicas


@pytest.mark.parametrize("line, ok", [('workers = "auto"', True), ("workers = 2", True), ("workers = 0", False),
                                      ("workers = 65", False), ('workers = "many"', False), ("workers = true", False),
                                      ("workers = 1.5", False)])
def test_the_workers_setting_is_auto_or_a_count(tmp_path: Path, line: str, ok: bool) -> None:
    (tmp_path / "config.toml").write_text(f"[server]\n{line}\n")
    if ok:
        load_config(tmp_path)
        return
    with pytest.raises(ConfigError, match="workers must be"):
        load_config(tmp_path)


async def test_a_postgresql_gateway_serves_from_a_worker_per_core_by_default(tmp_path: Path) -> None:
    expected = max(1, min(os.cpu_count() or 1, AUTO_WORKERS_MAX))
    async with fresh_pg_database("test_auto_workers") as url:  # fails under CI=true, skips elsewhere
        data_dir = tmp_path / "data"
        await bootstrap.initialize(data_dir, store_url=url)
        assert load_config(data_dir).server.workers == "auto"
        proc = GatewayProcess(data_dir, auto_workers="auto")  # as `gateway serve` runs it, not pinned
        info = await asyncio.to_thread(proc.start)
        try:
            if expected > 1:
                assert len(_worker_pids(proc)) == expected
                seen: set[int] = set()
                for _ in range(100):
                    with urllib.request.urlopen(f"{info.http}/healthz", timeout=5) as resp:
                        seen.add(json.loads(resp.read())["worker"])
                    if len(seen) == expected:
                        break
                assert seen == set(range(expected))
            else:
                assert "worker processes" not in proc.log_path.read_text()
        finally:
            await asyncio.to_thread(proc.stop)

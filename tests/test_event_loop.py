"""`gateway serve` picks its event loop from [server] event_loop and says which in its log."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.harness import GatewayProcess, run_cli
from gateway.config import load_config


@pytest.mark.parametrize(("setting", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_serve_runs_on_the_configured_loop(tmp_path: Path, setting: str | None, expected: str) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    if setting is not None:
        cfg = load_config(data_dir)
        assert cfg.server.event_loop == "auto"
        cfg.server.event_loop = setting
        cfg.save()
    proc = GatewayProcess(data_dir)
    with proc:
        pass
    log = proc.log_path.read_text()
    assert f"(event loop: {expected})" in log, log[-2000:]

"""Windows (MS-XCEP/MS-WSTEP) fixtures: an initialized data directory made once, a running
gateway per test (shared by the CEP and CES tests)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import AsyncIterator

import pytest

from conformance.harness import running_gateway

from .helpers import WindowsServer


@pytest.fixture(scope="session")
def windows_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gateway init`` once per session (CAs, TLS certificate, the dev ``windows`` configuration)."""
    from gateway import bootstrap

    base = tmp_path_factory.mktemp("windows-template") / "data"
    asyncio.run(bootstrap.initialize(base))
    return base


@pytest.fixture
async def windows(windows_data_dir: Path, tmp_path: Path) -> AsyncIterator[WindowsServer]:
    target = tmp_path / "data"
    shutil.copytree(windows_data_dir, target)
    async with running_gateway(target) as (gw, info):
        yield WindowsServer(gw, info, tmp_path)

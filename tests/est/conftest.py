"""EST test fixtures: an initialized data directory made once, a running gateway per test."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from conformance.harness import running_gateway
from gateway.clock import Clock, system_clock

from .helpers import EstServer


@pytest.fixture(scope="session")
def initialized_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gateway init`` once per session (CAs, TLS certificate, dev labels); tests copy it."""
    from gateway import bootstrap

    base = tmp_path_factory.mktemp("est-template") / "data"
    asyncio.run(bootstrap.initialize(base))
    return base


@pytest.fixture
def data_dir(initialized_data_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(initialized_data_dir, target)
    return target


@pytest.fixture
def prepare() -> list[Callable[[Path], None]]:
    """Hooks a test adds to change the data directory before the gateway starts
    (request such a fixture before ``est``)."""
    return []


@pytest.fixture
def clock() -> Clock:
    """The gateway's clock; a module overrides this fixture with a FakeClock to move time."""
    return system_clock


@pytest.fixture
async def est(data_dir: Path, tmp_path: Path, prepare: list[Callable[[Path], None]],
              clock: Clock) -> AsyncIterator[EstServer]:
    for hook in prepare:
        hook(data_dir)
    async with running_gateway(data_dir, clock=clock) as (gw, info):
        yield EstServer(gw, info, tmp_path)

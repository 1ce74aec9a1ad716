"""Fixtures for Intune: the simulator over real HTTPS on loopback (one per test), and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conformance.intune.simulator import IntuneSimulator, running_simulator
from protocols.scep.intune.client import IntuneClient, IntuneConnection


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[IntuneSimulator]:
    """A started Intune simulator (its CA in ``simulator.ca_file``); stopped after the test."""
    async with running_simulator(tmp_path / "intune-simulator") as sim:
        yield sim


def connection_for(simulator: IntuneSimulator, **overrides: Any) -> IntuneConnection:
    """The connection settings that point a client at the simulator (authority and Graph alike)."""
    fields: dict[str, Any] = {
        "tenant": simulator.tenant, "client_id": simulator.client_id, "client_secret": simulator.client_secret,
        "authority_url": simulator.base_url, "graph_url": simulator.base_url, "ca_file": simulator.ca_file,
        "provider": "enrollment-gateway-test/1.0", "timeout": 5.0,
    }
    fields.update(overrides)
    return IntuneConnection(**fields)


@pytest.fixture
async def intune(simulator: IntuneSimulator) -> AsyncIterator[IntuneClient]:
    client = IntuneClient(connection_for(simulator))
    yield client
    await client.close()

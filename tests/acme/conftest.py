"""Fixtures for the ACME tests: a served gateway (in-process, real TLS) and its ACME store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from conformance.acme.support import served
from conformance.harness import GatewayInfo


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Any, GatewayInfo]]:
    async with served(tmp_path) as pair:
        yield pair


@pytest.fixture(params=["no", "yes"], ids=["memory-nonces", "database-nonces"])
async def either_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Any, GatewayInfo]]:
    """The gateway without replicas (nonces in memory) and as a replica (nonces in the store)."""
    async with served(tmp_path, replicas=request.param) as pair:
        yield pair

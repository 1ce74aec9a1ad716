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

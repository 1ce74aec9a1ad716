"""Active Directory fixtures: one real Samba AD DC (directory + KDC) per test session.

The DC is provisioned into a temporary directory and bound to a loopback address only
(tests/ad/samba.py, tests/ad/README.md). Without Samba installed these tests skip, except
under CI=true where they fail: .ci/run installs it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from conformance.harness import in_ci

from .samba import SambaDC, missing_tools, start_dc


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """A running Samba AD DC for GW.TEST, stopped (by PID) and deleted after the session."""
    missing = missing_tools()
    if missing:
        message = f"Samba AD DC not available, missing: {', '.join(missing)}"
        if in_ci():
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="samba-dc-"))
    dc: SambaDC | None = None
    try:
        dc = start_dc(root / "dc")
        yield dc
    finally:
        if dc is not None:
            dc.stop()
        shutil.rmtree(root, ignore_errors=True)

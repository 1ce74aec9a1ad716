"""Fixtures for the EST real-client suites: the same running gateway as tests/est."""

from __future__ import annotations

from tests.est.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    clock,
    data_dir,
    est,
    initialized_data_dir,
    prepare,
)

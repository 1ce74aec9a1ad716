"""Seed inputs for the fuzz targets, read at run time from where they live.

Two sources: the project's recorded client exchanges (``fixtures/``) and the shared
captures of real clients beside the clone (``../shared/captures``, see its README).
Captures are never copied into the project. Under ``CI=true`` a missing
``../shared`` is an error (CI runs with it beside the clone); elsewhere the targets
fall back to their built-in minimal seeds and say so.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_CAPTURES = ROOT.parent / "shared" / "captures"


class MissingCaptures(RuntimeError):
    """``../shared/captures`` is absent under CI=true."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def captures(family: str) -> Path | None:
    """``../shared/captures/<family>``, or None outside CI when it is missing."""
    path = SHARED_CAPTURES / family
    if path.is_dir():
        return path
    if in_ci():
        raise MissingCaptures(f"shared captures missing at {path} (CI runs with ../shared beside the clone)")
    print(f"fuzz: {path} missing; using built-in seeds only", file=sys.stderr)
    return None


def capture_files(family: str, pattern: str) -> list[bytes]:
    base = captures(family)
    if base is None:
        return []
    return [p.read_bytes() for p in sorted(base.glob(pattern)) if p.is_file()]


def exchanges(protocol: str) -> list[dict[str, Any]]:
    """The recorded exchanges of ``fixtures/<protocol>/*.json``."""
    out = []
    for path in sorted((FIXTURES / protocol).glob("*.json")):
        out.append(json.loads(path.read_text()))
    return out


def request_body(exchange: dict[str, Any]) -> bytes:
    return base64.b64decode(exchange.get("request_body") or "")

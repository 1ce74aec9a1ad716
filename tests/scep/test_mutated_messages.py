"""Mutated pkiMessages: every byte-level corruption is a MalformedMessage or a failInfo.

load_content_info decodes a SignedData eagerly except its embedded certificates, which
are left to cryptography's strict parser; this checks that nothing the lazy parts can
raise escapes as an unexpected exception (a 500) from parsing and verification.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from protocols.scep.message import parse_pki_message, verify_pki_message
from protocols.scep.types import MalformedMessage, ScepFailure

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scep"


def _request(name: str) -> bytes:
    return base64.b64decode(json.loads((FIXTURES / name).read_text())["request_body"])


def _mutations(data: bytes):  # type: ignore[no-untyped-def]
    step = max(1, len(data) // 700)
    for position in range(0, len(data), step):
        for value in (0x00, 0xFF, data[position] ^ 0x01):
            if value != data[position]:
                yield data[:position] + bytes([value]) + data[position + 1:]
    for cut in range(1, len(data), max(1, len(data) // 50)):
        yield data[:cut]


@pytest.mark.parametrize("fixture", ["scepclient-pkcsreq.json", "scepclient-renewalreq.json"])
def test_corrupted_bytes_never_raise_anything_else(fixture: str) -> None:
    data = _request(fixture)
    now = dt.datetime.now(dt.timezone.utc)
    outcomes = {"malformed": 0, "failure": 0, "accepted": 0}  # every other exception fails the test
    for mutated in _mutations(data):
        try:
            msg = parse_pki_message(mutated)
        except MalformedMessage:
            outcomes["malformed"] += 1
            continue
        try:
            verify_pki_message(msg, now=now, allowed_digests=("sha1", "sha256", "sha512"), max_skew=None)
        except ScepFailure:
            outcomes["failure"] += 1
            continue
        outcomes["accepted"] += 1
    assert outcomes["malformed"] > 100 and outcomes["failure"] > 100
    # a flipped bit that still verifies can only sit outside the signed bytes (unsigned parts)
    assert outcomes["accepted"] < outcomes["failure"]

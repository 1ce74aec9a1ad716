"""ARI certificate identifiers and windows (RFC 9773)."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.acme.ari import CertID, suggested_window
from protocols.acme.problems import Problem


def test_rfc9773_example_identifier() -> None:
    # RFC 9773 section 4.1: AKI 69:88:5B:..., serial 00:87:65:43:21.
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert_id = CertID(aki, 0x87654321)
    assert str(cert_id) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert CertID.parse("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE") == cert_id


@pytest.mark.parametrize("text", [
    "", "abc", "a.b.c", "aYhba4dGQEHhs3uEe6CuLN4ByNQ.", ".AIdlQyE",
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAIdlQyE",  # not minimal (leading zero not needed)
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ",  # negative
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE",
])
def test_malformed_identifiers(text: str) -> None:
    with pytest.raises(Problem) as info:
        CertID.parse(text)
    assert info.value.type == "malformed"


def test_window_is_a_slice_of_the_validity_and_revoked_means_now() -> None:
    nb = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    na = nb + dt.timedelta(days=90)
    w = suggested_window(nb, na, (2 / 3, 5 / 6), revoked=False, now=nb)
    assert w.start == nb + dt.timedelta(days=60) and w.end == nb + dt.timedelta(days=75)
    now = nb + dt.timedelta(days=10)
    r = suggested_window(nb, na, (2 / 3, 5 / 6), revoked=True, now=now)
    assert r.start < now and r.end == now
    assert w.to_json() == {"start": "2025-03-02T00:00:00Z", "end": "2025-03-17T00:00:00Z"}

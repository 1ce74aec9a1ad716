"""gateway/sealing.py: secrets sealed under the CA passphrase, bound to what they belong to,
and shown by the admin API only as ``(sealed)``."""

from __future__ import annotations

import pytest

from gateway.admin.views import SEALED, redacted
from gateway.sealing import SealError, Sealer, derive, is_sealed, stretch

SEALER = Sealer(derive(stretch(b"passphrase"), b"test"))


def test_round_trip_context_binding_and_tampering() -> None:
    token = SEALER.seal(b"secret", "cfg-a")
    assert is_sealed(token) and SEALER.unseal(token, "cfg-a") == b"secret"
    with pytest.raises(SealError):
        SEALER.unseal(token, "cfg-b")
    with pytest.raises(SealError):
        SEALER.unseal(token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "cfg-a")
    with pytest.raises(SealError):
        Sealer(derive(stretch(b"other"), b"test")).unseal(token, "cfg-a")
    assert SEALER.seal(b"secret", "cfg-a") != token  # a fresh IV each time


@pytest.mark.parametrize("text", ["v1.", "v1.short", "plain", "v1.has spaces and more than enough characters......"])
def test_what_is_not_sealed(text: str) -> None:
    assert not is_sealed(text)


def test_the_admin_view_redacts_sealed_values_at_any_depth() -> None:
    token = SEALER.seal(b"pw", "x")
    settings = {"directory": {"password": token, "servers": ["ldaps://dc1"]}, "list": [token, "v1.x"], "n": 3}
    assert redacted(settings) == {"directory": {"password": SEALED, "servers": ["ldaps://dc1"]},
                                  "list": [SEALED, "v1.x"], "n": 3}

"""The ``intune`` table with a certificate instead of a secret: a path and a sealed key,
never both ways to sign in, never neither, never a plain-text key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from protocols.scep.intune.settings import parse_intune

from .test_settings import SEALED, TABLE

CERT_TABLE = {"tenant": TABLE["tenant"], "client_id": TABLE["client_id"],
              "client_certificate": "/etc/gateway/intune-app.pem", "client_key": SEALED}


def test_a_certificate_and_a_sealed_key_sign_in_instead_of_a_secret() -> None:
    s = parse_intune(CERT_TABLE, "intune")
    assert s is not None
    assert (s.client_secret, s.client_certificate, s.client_key) == (None, Path("/etc/gateway/intune-app.pem"), SEALED)
    assert SEALED not in repr(s)


def test_both_ways_to_sign_in_are_refused() -> None:
    with pytest.raises(ConfigError, match="both client_secret and client_certificate"):
        parse_intune({**CERT_TABLE, "client_secret": SEALED}, "intune")


def test_neither_way_is_refused_naming_both_commands() -> None:
    with pytest.raises(ConfigError, match=r"client_secret is required \(or client_certificate.*--client-key-file"):
        parse_intune({"tenant": "t", "client_id": "c"}, "intune")


def test_a_plain_text_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="client_key must be sealed"):
        parse_intune({**CERT_TABLE, "client_key": "-----BEGIN PRIVATE KEY-----\nMIIE..."}, "intune")


@pytest.mark.parametrize("bad", [{"client_certificate": "relative.pem"}, {"client_key": None},
                                 {"client_certificate": None}])
def test_half_a_certificate_credential_is_refused(bad: dict[str, object]) -> None:
    table = {k: v for k, v in {**CERT_TABLE, **bad}.items() if v is not None}
    with pytest.raises(ConfigError, match="settings.intune.client_(certificate|key)"):
        parse_intune(table, "intune")

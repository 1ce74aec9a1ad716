"""The ``intune`` table of a SCEP configuration: a sealed secret, https endpoints, and the
verifier list an Intune configuration gets."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError
from protocols.scep.intune.settings import AUTHORITY_URL, GRAPH_URL, parse_intune
from protocols.scep.settings import parse_settings

SEALED = "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"  # shape only: parsing never opens it
TABLE = {"tenant": "contoso.onmicrosoft.com", "client_id": "11111111-2222-3333-4444-555555555555",
         "client_secret": SEALED}


def test_defaults_are_microsofts_endpoints_and_a_15_minute_sync() -> None:
    s = parse_intune(TABLE, "intune")
    assert s is not None
    assert (s.authority_url, s.graph_url) == (AUTHORITY_URL, GRAPH_URL)
    assert (s.revocation_sync_seconds, s.retries, s.timeout, s.ca_file) == (900, 3, 10.0, None)
    assert SEALED not in repr(s)


def test_a_plain_text_secret_is_refused_pointing_at_the_cli() -> None:
    with pytest.raises(ConfigError, match=r"must be sealed.*gateway scep intune set --config intune"):
        parse_intune({**TABLE, "client_secret": "hunter2-plain"}, "intune")
    with pytest.raises(ConfigError, match="client_secret is required"):
        parse_intune({k: v for k, v in TABLE.items() if k != "client_secret"}, "intune")


@pytest.mark.parametrize("key", ["authority_url", "graph_url"])
@pytest.mark.parametrize("url", ["http://login.example", "ftp://x.example", "https://", "https://x.example/?q=1"])
def test_endpoints_must_be_https(key: str, url: str) -> None:
    with pytest.raises(ConfigError, match=f"settings.intune.{key} must be an https:// URL"):
        parse_intune({**TABLE, key: url}, "intune")


def test_an_https_simulator_url_is_accepted_without_trailing_slash() -> None:
    s = parse_intune({**TABLE, "authority_url": "https://127.0.0.1:8443/", "graph_url": "https://127.0.0.1:8443",
                      "ca_file": "/tmp/sim-ca.pem", "revocation_sync_seconds": 0}, "intune")
    assert s is not None and s.authority_url == "https://127.0.0.1:8443" and s.revocation_sync_seconds == 0


@pytest.mark.parametrize("bad", [{"tenant": ""}, {"ca_file": "relative.pem"}, {"retries": -1},
                                 {"revocation_sync_seconds": True}, {"timeout_seconds": 0}, {"surprise": 1}])
def test_malformed_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="settings.intune"):
        parse_intune({**TABLE, **bad}, "intune")


def test_an_intune_configuration_asks_intune_alone_by_default() -> None:
    assert parse_settings({"intune": TABLE}, "intune").verifiers == ("intune",)
    assert parse_settings({}, "plain").verifiers == ("dynamic", "static")
    explicit = parse_settings({"intune": TABLE, "challenge_verifiers": ["intune", "static"]}, "intune")
    assert explicit.verifiers == ("intune", "static")


def test_half_made_intune_configurations_are_refused() -> None:
    with pytest.raises(ConfigError, match="leaves out 'intune'"):
        parse_settings({"intune": TABLE, "challenge_verifiers": ["static"]}, "intune")
    with pytest.raises(ConfigError, match="no settings.intune table"):
        parse_settings({"challenge_verifiers": ["intune"]}, "intune")
    with pytest.raises(ConfigError, match="settings.challenge must be 'required' with settings.intune"):
        parse_settings({"intune": TABLE, "challenge": "none"}, "intune")

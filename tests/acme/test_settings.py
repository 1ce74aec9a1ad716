"""An ACME configuration's settings: defaults, strictness, and the guarded always-valid mode."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from gateway.errors import ConfigError
from protocols.acme.settings import ALWAYS_VALID_ENV, AcmeSettings, RateLimit


def test_defaults() -> None:
    s = AcmeSettings.parse("acme", {})
    assert s.eab_required is False and s.http01_port == 80 and s.tlsalpn01_port == 443
    assert s.dns_resolver is None and s.challenge_types == ("http-01", "dns-01", "tls-alpn-01")
    assert s.rate_limits["orders_per_account"] == RateLimit(300, dt.timedelta(hours=3))
    assert s.always_valid is False


def test_values_are_read_and_checked() -> None:
    s = AcmeSettings.parse("x", {
        "eab_required": True, "http01_port": 5002, "dns_resolver": "127.0.0.1:8053",
        "validation_address": "::1", "identifiers": {"allow": ["*.corp.example"], "ip": False},
        "rate_limits": {"orders_per_account": "5/PT1M", "accounts_per_config": None},
        "approval": "manual", "order_lifetime": "PT1H",
    })
    assert s.dns_resolver == ("127.0.0.1", 8053) and s.validation_address == "::1"
    assert s.rate_limits == {"orders_per_account": RateLimit(5, dt.timedelta(minutes=1)),
                             "orders_per_config": RateLimit(10000, dt.timedelta(hours=1))}
    assert s.order_lifetime == dt.timedelta(hours=1) and not s.policy.ip
    assert AcmeSettings.parse("x", {"rate_limits": None}).rate_limits == {}


@pytest.mark.parametrize("raw, needle", [
    ({"eab_requird": True}, "unknown setting"),
    ({"http01_port": 0}, "http01_port"),
    ({"http01_port": "80"}, "http01_port"),
    ({"dns_resolver": "resolver.example:53"}, "dns_resolver"),
    ({"challenge_types": ["http-01", "email-01"]}, "challenge_types"),
    ({"rate_limits": {"orders_per_account": "lots"}}, "COUNT/ISO-8601-DURATION"),
    ({"rate_limits": {"orders_per_day": "1/P1D"}}, "unknown limit"),
    ({"identifiers": {"allow": ["bad name"]}}, "identifiers"),
    ({"identifiers": {"alow": []}}, "identifiers.alow"),
    ({"renewal_window": [0.9, 0.1]}, "renewal_window"),
    ({"order_lifetime": "7 days"}, "order_lifetime"),
    ({"challenge_validation": "yes"}, "challenge_validation"),
])
def test_bad_settings_name_the_setting(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        AcmeSettings.parse("x", raw)
    assert needle in info.value.detail


def test_always_valid_needs_the_setting_and_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    raw = {"challenge_validation": "always-valid"}
    monkeypatch.delenv(ALWAYS_VALID_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="gateway.acme"):
        assert AcmeSettings.parse("bench", raw).always_valid is False
    assert any(r.levelno == logging.ERROR and ALWAYS_VALID_ENV in r.getMessage() for r in caplog.records)
    monkeypatch.setenv(ALWAYS_VALID_ENV, "other,bench2")
    assert AcmeSettings.parse("bench", raw).always_valid is False
    monkeypatch.setenv(ALWAYS_VALID_ENV, "other, bench")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.acme"):
        assert AcmeSettings.parse("bench", raw).always_valid is True
    assert any("WITHOUT validation" in r.getMessage() for r in caplog.records)
    assert AcmeSettings.parse("bench", {}).always_valid is False  # the environment alone does nothing

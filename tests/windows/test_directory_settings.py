"""The ``directory`` table of a Windows configuration: what is refused before anything is
used, and that the service password is only ever stored sealed (no directory needed)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.sealing import SealError, Sealer, derive, stretch
from protocols.windows.directory.settings import parse_directory, seal_context
from protocols.windows.settings import parse_settings

PROFILES = ["windows-user", "windows-computer"]
SEALER = Sealer(derive(stretch(b"test passphrase"), b"windows:directory password"))


def table(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"servers": ["ldaps://dc1.corp.example"], "domain": "corp.example",
                            "bind_user": "svc@corp.example",
                            "password": SEALER.seal(b"s3cret", seal_context("corp"))}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_defaults_from_the_domain() -> None:
    parsed = parse_directory(table(profiles={"CorpUser": "windows-user"}), "w", PROFILES)
    assert parsed is not None
    assert parsed.base_dn == "DC=corp,DC=example" and parsed.realm == "CORP.EXAMPLE"
    assert parsed.timeout == 5.0 and parsed.cache_seconds == 300.0 and not parsed.password_logon
    assert parsed.profile_for("corpuser") == "windows-user" and parsed.profile_for("Other") is None
    assert "s3cret" not in repr(parsed) and parsed.password is not None and parsed.password not in repr(parsed)


@pytest.mark.parametrize(("changes", "message"), [
    ({"password": "s3cret"}, "must be sealed"),
    ({"password": None}, "exactly one of password"),
    ({"password_file": "/etc/pw"}, "exactly one of password"),
    ({"password": None, "password_file": "relative/pw"}, "absolute path"),
    ({"servers": ["http://dc1"]}, "servers"),
    ({"servers": []}, "servers"),
    ({"servers": ["ldaps://dc1/dc=x?sub"]}, "servers"),
    ({"domain": "corp"}, "not a DNS domain"),
    ({"bind_user": None}, "bind_user"),
    ({"profiles": {"CorpUser": "tls-server"}}, "not one of the configuration's profiles"),
    ({"default_profile": "nope"}, "not one of the configuration's profiles"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"password_logon": "yes"}, "password_logon"),
    ({"unknown": 1}, "unknown keys unknown"),
])
def test_refused_tables_name_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_directory(table(**changes), "w", PROFILES)


def test_a_directory_makes_the_templates_list_optional_but_not_for_mdm() -> None:
    settings = parse_settings({"directory": table()}, "corp", "ca", PROFILES)
    assert settings.templates == () and settings.directory is not None
    with pytest.raises(ConfigError, match="templates"):
        parse_settings({}, "corp", "ca", PROFILES)
    with pytest.raises(ConfigError, match="mdm_discovery"):
        parse_settings({"directory": table(), "mdm_discovery": True}, "corp", "ca", PROFILES)


def test_a_sealed_password_opens_only_for_its_configuration() -> None:
    sealed = SEALER.seal(b"s3cret", seal_context("corp"))
    assert SEALER.unseal(sealed, seal_context("corp")) == b"s3cret"
    with pytest.raises(SealError):
        SEALER.unseal(sealed, seal_context("other"))
    other_key = Sealer(derive(stretch(b"another passphrase"), b"windows:directory password"))
    with pytest.raises(SealError):
        other_key.unseal(sealed, seal_context("corp"))

"""Profile files: the shipped defaults load, and every kind of bad file is refused."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import isodate
import pytest
import tomli_w
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import ConfigError
from gateway.keys import KEY_ALGORITHMS
from gateway.profiles import default_profiles_dir, load_profile, load_profiles, parse_profile
from gateway.profiles.model import parse_subject_format

DEFAULT_NAMES = {"tls-server", "tls-client", "device", "user", "sub-ca"}


def default_data(name: str) -> dict:
    return tomllib.loads((default_profiles_dir() / f"{name}.toml").read_text())


def write_profile(directory: Path, data: dict, stem: str | None = None) -> Path:
    path = directory / f"{stem or data['name']}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_every_default_profile_loads() -> None:
    profiles = load_profiles(default_profiles_dir())
    assert set(profiles) == DEFAULT_NAMES
    for name, profile in profiles.items():
        assert profile.name == name
        assert load_profile(default_profiles_dir() / f"{name}.toml") == profile


def test_default_profile_contents() -> None:
    p = load_profiles(default_profiles_dir())
    server = p["tls-server"]
    assert server.validity == dt.timedelta(days=90)
    assert server.max_validity == dt.timedelta(days=397)
    assert server.backdate == dt.timedelta(minutes=5)
    assert server.extended_key_usage == (ExtendedKeyUsageOID.SERVER_AUTH,)
    assert server.key_usage == {"digital_signature", "key_encipherment"}
    assert server.key_policy.allowed == set(KEY_ALGORITHMS)
    assert not server.basic_constraints.ca

    assert p["tls-client"].extended_key_usage == (ExtendedKeyUsageOID.CLIENT_AUTH,)
    device = p["device"]
    assert device.validity == isodate.Duration(years=1)
    assert device.subject.mode == "csr"
    assert device.extended_key_usage == (ExtendedKeyUsageOID.CLIENT_AUTH,)
    user = p["user"]
    assert set(user.extended_key_usage) == {
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert user.san.allowed_types == {"email", "upn"}
    sub = p["sub-ca"]
    assert sub.basic_constraints.ca and sub.basic_constraints.path_length == 0
    assert {"key_cert_sign", "crl_sign"} <= sub.key_usage
    assert sub.extended_key_usage == ()
    assert sub.validity == isodate.Duration(years=5)
    assert sub.identifiers.crl_distribution_point and sub.identifiers.aia_ocsp


def test_minimal_profile_gets_documented_defaults() -> None:
    p = parse_profile({"name": "minimal", "validity": "P30D"}, "test")
    assert p.max_validity == p.validity == dt.timedelta(days=30)
    assert p.backdate == dt.timedelta(minutes=1)
    assert p.key_policy.allowed == set(KEY_ALGORITHMS)
    assert p.subject.mode == "csr" and p.san.mode == "csr"
    assert p.identifiers.subject_key_identifier == "rfc7093"
    assert p.basic_constraints.critical and not p.basic_constraints.ca
    assert p.extensions.allowed == frozenset() and not p.extensions.ignore_unknown_extensions


def test_names_and_oids_are_resolved() -> None:
    p = parse_profile(
        {
            "name": "mixed",
            "validity": "P1D",
            "key_usage": ["digital_signature", "non_repudiation"],
            "extended_key_usage": ["kdc_auth", "smartcard_logon", "1.3.6.1.4.1.99999.1", "client_auth"],
            "key_policy": {"allowed": ["ecdsa-p-256", "rsa3072"]},
            "extensions": {"allowed": ["1.3.6.1.5.5.7.1.24"]},
        },
        "test",
    )
    assert p.key_usage == {"digital_signature", "content_commitment"}
    assert p.extended_key_usage == (
        x509.ObjectIdentifier("1.3.6.1.5.2.3.5"),
        ExtendedKeyUsageOID.SMARTCARD_LOGON,
        x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    assert p.key_policy.allowed == {"EC-P256", "RSA-3072"}
    assert p.extensions.allowed == {x509.ObjectIdentifier("1.3.6.1.5.5.7.1.24")}


def _mutate(data: dict, path: str, value: object) -> dict:
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return data


_DELETE = object()

BAD_CASES = [
    # (mutation path, value, field named in the error)
    ("colour", "blue", "colour"),
    ("subject.colour", "blue", "subject.colour"),
    ("identifiers.ocsp", True, "identifiers.ocsp"),
    ("validity", "90 days", "validity"),
    ("validity", "P", "validity"),
    ("validity", "-P1D", "validity"),
    ("validity", "PT0S", "validity"),
    ("validity", 90, "validity"),
    ("max_validity", "P30D", "max_validity"),
    ("backdate", "P1M", "backdate"),
    ("key_policy.allowed", ["RSA-2048", "RSA-1024"], "key_policy.allowed"),
    ("key_policy.allowed", ["DSA-2048"], "key_policy.allowed"),
    ("key_policy.allowed", [], "key_policy.allowed"),
    ("key_usage", ["digital_signature", "teleport"], "key_usage"),
    ("key_usage", ["key_cert_sign"], "key_usage"),
    ("extended_key_usage", ["server_auth", "web_auth"], "extended_key_usage"),
    ("extended_key_usage", ["1.2.x"], "extended_key_usage"),
    ("basic_constraints.path_length", 0, "basic_constraints.path_length"),
    ("basic_constraints.ca", "yes", "basic_constraints.ca"),
    ("subject.mode", "format", "subject.format"),
    ("subject.mode", "ldap", "subject.mode"),
    ("subject.format", "CN=<cn>", "subject.format"),
    ("san.allowed_types", ["dns", "x400"], "san.allowed_types"),
    ("san.mode", "none", "san.mode"),
    ("extensions.allowed", ["2.5.29.17"], "extensions.allowed"),
    ("extensions.allowed", ["not-an-oid"], "extensions.allowed"),
    ("identifiers.subject_key_identifier", "md5", "identifiers.subject_key_identifier"),
    ("description", 5, "description"),
    ("name", _DELETE, "name"),
    ("name", "Bad Name", "name"),
]


@pytest.mark.parametrize("path,value,field", BAD_CASES, ids=[f"{p}={v!r}" for p, v, _ in BAD_CASES])
def test_bad_profile_file_is_refused(tmp_path: Path, path: str, value: object, field: str) -> None:
    data = _mutate(default_data("tls-server"), path, value)
    file = write_profile(tmp_path, data, stem="tls-server")
    with pytest.raises(ConfigError) as info:
        load_profile(file)
    assert str(file) in info.value.detail
    assert f"{field}:" in info.value.detail


def test_bad_subject_formats_are_refused() -> None:
    for fmt in ["CN", "CN=<cn", "XX=foo", "CN=", "CN=a,,O=b", "CN=<bad name>", "CN=a>"]:
        data = _mutate(default_data("device"), "subject", {"mode": "format", "format": fmt})
        with pytest.raises(ConfigError, match="subject.format"):
            parse_profile(data, "device.toml")


def test_ca_profile_rules() -> None:
    sub = default_data("sub-ca")
    with pytest.raises(ConfigError, match="key_usage"):
        parse_profile(_mutate(default_data("sub-ca"), "key_usage", ["crl_sign"]), "x")
    with pytest.raises(ConfigError, match="basic_constraints.critical"):
        parse_profile(_mutate(default_data("sub-ca"), "basic_constraints.critical", False), "x")
    with pytest.raises(ConfigError, match="subject_key_identifier"):
        parse_profile(_mutate(sub, "identifiers.subject_key_identifier", "none"), "x")
    with pytest.raises(ConfigError, match="path_length"):
        parse_profile(_mutate(default_data("sub-ca"), "basic_constraints.path_length", -1), "x")


def test_name_must_equal_file_stem(tmp_path: Path) -> None:
    file = write_profile(tmp_path, default_data("tls-server"), stem="web")
    with pytest.raises(ConfigError, match="name") as info:
        load_profile(file)
    assert str(file) in info.value.detail


def test_invalid_toml_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\nvalidity = \n')
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_profile(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_profile(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles(tmp_path / "nowhere")


def test_load_profiles_reads_a_directory(tmp_path: Path) -> None:
    write_profile(tmp_path, {"name": "alpha", "validity": "P7D"})
    write_profile(tmp_path, {"name": "beta", "validity": "P1Y", "max_validity": "P18M"})
    (tmp_path / "notes.txt").write_text("not a profile")
    profiles = load_profiles(tmp_path)
    assert sorted(profiles) == ["alpha", "beta"]
    assert profiles["beta"].max_validity == isodate.Duration(months=18)
    write_profile(tmp_path, {"name": "gamma", "validity": "P7D", "san": {"mode": "sometimes"}})
    with pytest.raises(ConfigError, match="gamma.toml.*san.mode"):
        load_profiles(tmp_path)


def test_subject_format_parsing() -> None:
    template = parse_subject_format(r"CN=<cn>+UID=<uid>, OU=Devices ,O=Example\, Inc.,C=DE,1.2.3.4=x<a.b>y")
    assert len(template) == 5
    first = template[0]
    assert [a.oid for a in first] == [NameOID.COMMON_NAME, NameOID.USER_ID]
    assert first[0].variables == ("cn",)
    assert template[1][0].parts == ((False, "Devices"),)
    assert template[2][0].parts == ((False, "Example, Inc."),)
    assert template[4][0].oid == x509.ObjectIdentifier("1.2.3.4")
    assert template[4][0].parts == ((False, "x"), (True, "a.b"), (False, "y"))

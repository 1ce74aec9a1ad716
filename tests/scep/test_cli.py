"""``gateway init`` / ``gateway info`` for SCEP and the ``gateway scep ...`` commands (real CLI)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.harness import run_cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scep-cli") / "data"
    run_cli("init", data_dir=path)
    return path


def db(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "gateway.db")


def test_info_lists_the_dev_configuration(data_dir: Path) -> None:
    info = json.loads(run_cli("info", "--json", data_dir=data_dir).stdout)
    creds = json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())["scep"]["scep"]
    assert info["protocols"]["scep"] == [
        {"config": "scep", "url": f"{info['http']}/scep/scep", "challenge": creds["challenge"],
         "admin": {"username": "ndes-admin", "password": creds["admin_password"]}}
    ]


def test_secrets_are_stored_hashed_and_the_ra_key_encrypted(data_dir: Path) -> None:
    creds = json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())["scep"]["scep"]
    with db(data_dir) as conn:
        secrets = conn.execute("select kind, name, secret_hash from scep_secrets").fetchall()
        users = conn.execute("select protocol, protocol_config, kind, username, secret_hash "
                             "from enrollment_credentials where protocol = 'scep'").fetchall()
        (cert_pem, key_pem, role), = conn.execute(
            "select certificate_pem, key_pem_encrypted, role from scep_ra_certificates").fetchall()
    # the static challenge is SCEP's own; the challenge admin is an enrollment credential
    assert {(k, n) for k, n, _ in secrets} == {("static_challenge", "static")}
    assert [u[:4] for u in users] == [("scep", "scep", "user", "ndes-admin")]
    for stored in [s[2] for s in secrets] + [u[4] for u in users]:
        assert stored.startswith("scrypt$") and creds["challenge"] not in stored and creds["admin_password"] not in stored
    assert role == "current" and "ENCRYPTED PRIVATE KEY" in key_pem
    passphrase = (data_dir / "secrets" / "ca-passphrase").read_bytes().strip()
    key = serialization.load_pem_private_key(key_pem.encode(), passphrase)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert cert.issuer.rfc4514_string() == "CN=Gateway Dev RSA Issuing CA"
    # issued under the profile the adapter declares (the core loads it; the data
    # directory's profiles are the operator's and stay untouched), and audited
    serial = format(cert.serial_number, "x")
    with db(data_dir) as conn:
        (profile,), = conn.execute("select profile from certificates where serial = ?", (serial,)).fetchall()
        purposes = [json.loads(d)["purpose"] for d, in conn.execute(
            "select detail from events where type = 'internal_issue' and status = 'success' and serial = ?",
            (serial,))]
    assert profile == "scep-ra" and purposes == ["scep-ra"]
    assert not (data_dir / "profiles" / "scep-ra.toml").exists()
    raw = (data_dir / "gateway.db").read_bytes()
    for secret in (creds["challenge"], creds["admin_password"]):
        assert secret.encode() not in raw


def test_challenge_commands(data_dir: Path) -> None:
    out = json.loads(run_cli("scep", "challenge", "--json", "--subject", "CN=cli-device", "--ttl", "PT5M",
                             data_dir=data_dir).stdout)
    assert len(out["challenge"]) == 16 and out["subject"] == "CN=cli-device"
    plain = run_cli("scep", "challenge", data_dir=data_dir).stdout.strip()
    assert len(plain) == 16 and plain != out["challenge"]
    with db(data_dir) as conn:
        stored = [r[0] for r in conn.execute("select challenge_sha256 from scep_challenges")]
    assert out["challenge"] not in stored and len(stored) == 2
    assert run_cli("scep", "static-challenge", "--value", "cli-static-123", data_dir=data_dir).stdout.strip() == "cli-static-123"
    password = run_cli("scep", "admin", "add", "jamf", data_dir=data_dir).stdout.strip()
    assert len(password) >= 16
    with db(data_dir) as conn:
        (stored,), = conn.execute("select secret_hash from enrollment_credentials "
                                  "where protocol = 'scep' and protocol_config = 'scep' and username = 'jamf'")
        assert conn.execute("select count(*) from scep_secrets where kind = 'challenge_admin'").fetchone() == (0,)
    assert stored.startswith("scrypt$") and password not in stored
    run_cli("scep", "admin", "remove", "jamf", data_dir=data_dir)
    with db(data_dir) as conn:
        assert conn.execute("select count(*) from enrollment_credentials where username = 'jamf'").fetchone() == (0,)
    missing = run_cli("scep", "admin", "remove", "jamf", data_dir=data_dir, check=False)
    assert missing.returncode == 1 and "no challenge admin 'jamf'" in missing.stderr
    failed = run_cli("scep", "challenge", "--config", "nosuch", data_dir=data_dir, check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("gateway: error:") and "Traceback" not in failed.stderr


def test_config_create_and_ra_commands(data_dir: Path) -> None:
    out = json.loads(run_cli("scep", "config", "create", "held", "--approval", "manual", "--static-challenge",
                             data_dir=data_dir).stdout)
    assert out["config"] == "held" and len(out["challenge"]) >= 16
    listed = json.loads(run_cli("scep", "ra", "list", "--config", "held", data_dir=data_dir).stdout)
    assert [r["role"] for r in listed] == ["current"]
    renewed = json.loads(run_cli("scep", "ra", "issue", "--config", "held", data_dir=data_dir).stdout)
    assert sorted(r["role"] for r in renewed) == ["current", "retired"]

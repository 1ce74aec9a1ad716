"""``gateway init`` / ``gateway info`` for SCEP and the ``gateway scep ...`` commands (real CLI)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.harness import run_cli


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scep-cli") / "data"
    run_cli("init", data_dir=path)
    return path


@contextlib.contextmanager
def db(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """A connection closed on exit: one left open would keep a stale WAL index in this
    process once the CLI's own connection closes and removes the -shm file."""
    conn = sqlite3.connect(data_dir / "gateway.db")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def test_info_lists_the_dev_configuration(data_dir: Path) -> None:
    info = json.loads(run_cli("info", "--json", data_dir=data_dir).stdout)
    creds = json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())["scep"]["scep"]
    assert info["protocols"]["scep"] == [
        {"config": "scep", "url": f"{info['http']}/scep/scep", "challenge": creds["challenge"],
         "admin": {"username": "ndes-admin", "password": creds["admin_password"]}},
        # the dev MDM configuration's: its one-time challenges only, so no static challenge
        {"config": "mdm-scep", "url": f"{info['http']}/scep/mdm-scep", "challenge": None},
    ]


def test_secrets_are_stored_hashed_and_the_ra_key_encrypted(data_dir: Path) -> None:
    creds = json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())["scep"]["scep"]
    with db(data_dir) as conn:
        secrets = conn.execute("select kind, name, secret_hash from scep_secrets").fetchall()
        users = conn.execute("select protocol, protocol_config, kind, username, secret_hash "
                             "from enrollment_credentials where protocol = 'scep'").fetchall()
        (cert_pem, key_pem, role), = conn.execute(
            "select certificate_pem, key_pem_encrypted, role from scep_ra_certificates where config_id = 'scep'"
        ).fetchall()
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


def test_challenge_ttl_above_the_configured_maximum_is_refused(data_dir: Path) -> None:
    with db(data_dir) as conn:
        before = conn.execute("select count(*) from scep_challenges").fetchone()
    longer = run_cli("scep", "challenge", "--ttl", "P8D", data_dir=data_dir, check=False)  # default maximum P7D
    assert longer.returncode == 1 and longer.stdout == ""
    assert longer.stderr.startswith("gateway: error:") and "max_challenge_lifetime" in longer.stderr
    assert len(longer.stderr.strip().splitlines()) == 1
    with db(data_dir) as conn:
        assert conn.execute("select count(*) from scep_challenges").fetchone() == before
    assert len(run_cli("scep", "challenge", "--ttl", "P7D", data_dir=data_dir).stdout.strip()) == 16


def _ra_files(tmp_path: Path, name: str, *, bits: int = 2048, not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> tuple[str, str]:
    """A self-signed RSA certificate and its key as PEM files (an RA made elsewhere)."""
    now = dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"Imported RA {name}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_ra_import_refuses_expired_not_yet_valid_and_rsa_1024_unless_forced(data_dir: Path, tmp_path: Path) -> None:
    run_cli("scep", "config", "create", "imported", data_dir=data_dir)
    now = dt.datetime.now(dt.UTC)
    cases = {
        "expired": (_ra_files(tmp_path, "expired", not_before=now - dt.timedelta(days=400),
                              not_after=now - dt.timedelta(days=1)), "expired on"),
        "future": (_ra_files(tmp_path, "future", not_before=now + dt.timedelta(days=2)), "not valid before"),
        "weak": (_ra_files(tmp_path, "weak", bits=1024), "RSA-1024"),
    }

    def ra_serials() -> list[str]:
        return [r["serial"] for r in json.loads(run_cli("scep", "ra", "list", "--config", "imported",
                                                        data_dir=data_dir).stdout)]

    before = ra_serials()
    for (cert, key), reason in cases.values():
        refused = run_cli("scep", "ra", "import", "--config", "imported", cert, key, data_dir=data_dir, check=False)
        assert refused.returncode == 1 and refused.stdout == "", refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gateway: error:") and reason in lines[0]
    assert ra_serials() == before  # nothing imported
    good = run_cli("scep", "ra", "import", "--config", "imported", *_ra_files(tmp_path, "good"), data_dir=data_dir)
    assert "WARNING" not in good.stderr
    (cert, key), reason = cases["weak"]
    forced = run_cli("scep", "ra", "import", "--config", "imported", "--force", cert, key, data_dir=data_dir)
    warnings = [line for line in forced.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and reason in warnings[0]
    weak_serial = format(x509.load_pem_x509_certificate(Path(cert).read_bytes()).serial_number, "x")
    assert weak_serial in ra_serials()
    with db(data_dir) as conn:
        details = [json.loads(d) for d, in conn.execute(
            "select detail from events where type = 'scep_ra_import' and status = 'success' order by id")]
    assert [d.get("forced") for d in details][-2:] == [None, ["the RA key is RSA-1024, below RSA-2048"]]

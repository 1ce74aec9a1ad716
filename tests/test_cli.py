"""The ``gateway`` CLI as operators run it (subprocesses, real files)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from conformance.harness import run_cli

from .support import csr_pem, make_csr, make_key, openssl


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data"
    run_cli("init", data_dir=path)
    return path


def test_info_json_contract(data_dir: Path) -> None:
    out = run_cli("info", "--json", "--host", "127.0.0.2", "--https-port", "9443", "--http-port", "9080",
                  data_dir=data_dir)
    info = json.loads(out.stdout)
    assert info["https"] == "https://127.0.0.2:9443" and info["http"] == "http://127.0.0.2:9080"
    assert Path(info["tls_ca"]).is_file()
    ids = [ca["id"] for ca in info["cas"]]
    assert ids == ["root", "issuing", "issuing-rsa"]
    for ca in info["cas"]:
        assert set(ca) >= {"id", "certificate", "chain", "crl", "ocsp"}
        assert Path(ca["certificate"]).is_file() and Path(ca["chain"]).is_file()
        assert ca["crl"] == f"http://127.0.0.2:9080/crl/{ca['id']}.crl"
        assert ca["ocsp"] == f"http://127.0.0.2:9080/ocsp/{ca['id']}"
    assert info["admin"]["url"] == "https://127.0.0.2:9443/admin" and len(info["admin"]["api_key"]) >= 32
    assert set(info["protocols"]) >= {"acme", "scep", "est"}
    # The TLS certificate verifies against tls_ca for localhost.
    tls = data_dir / "tls" / "server.pem"
    untrusted = data_dir / "cas" / "issuing.pem"
    assert openssl("verify", "-CAfile", info["tls_ca"], "-untrusted", str(untrusted), "-verify_hostname",
                   "localhost", str(tls)).returncode == 0


def test_secrets_are_private_and_not_plaintext_in_the_store(data_dir: Path) -> None:
    for name in ("secrets/ca-passphrase", "secrets/dev-credentials.json", "tls/server-key.pem"):
        mode = stat.S_IMODE(os.stat(data_dir / name).st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    creds = json.loads((data_dir / "secrets/dev-credentials.json").read_text())
    db = (data_dir / "gateway.db").read_bytes()
    secrets = [(data_dir / "secrets/ca-passphrase").read_text().strip(), *string_leaves(creds)]
    assert creds["admin_api_key"] in secrets
    for secret in secrets:
        assert secret.encode() not in db
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in db and b"BEGIN PRIVATE KEY" not in db


SECRET_KEYS = {"admin_api_key", "api_key", "hmac_key", "password", "admin_password", "challenge", "secret"}


def string_leaves(value: object, key: str = "") -> list[str]:
    """Every secret-valued string in the dev-credentials document (protocols add their own);
    identifiers such as user names and EAB key ids may be stored in plain text."""
    if isinstance(value, str):
        return [value] if key in SECRET_KEYS else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in string_leaves(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in string_leaves(v, key)]
    return []


def test_init_refuses_an_initialized_directory(data_dir: Path) -> None:
    out = run_cli("init", data_dir=data_dir, check=False)
    assert out.returncode == 1 and "already initialized" in out.stderr and "Traceback" not in out.stderr


def test_cert_issue_list_revoke(data_dir: Path, tmp_path: Path) -> None:
    csr, _ = make_csr("cli.example.com", ["cli.example.com"], key=make_key("RSA-2048"))
    (tmp_path / "req.pem").write_bytes(csr_pem(csr))
    out = run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"), "--profile", "tls-server", data_dir=data_dir)
    cert = x509.load_pem_x509_certificate(out.stdout.encode())
    serial = format(cert.serial_number, "x")
    listed = json.loads(run_cli("cert", "list", "--json", data_dir=data_dir).stdout)
    assert any(row["serial"] == serial and row["status"] == "valid" for row in listed)
    run_cli("cert", "revoke", serial, "--reason", "superseded", data_dir=data_dir)
    revoked = json.loads(run_cli("cert", "list", "--status", "revoked", "--json", data_dir=data_dir).stdout)
    assert [row["serial"] for row in revoked] == [serial]
    again = run_cli("cert", "revoke", serial, "--reason", "superseded", data_dir=data_dir, check=False)
    assert again.returncode == 1 and "revoked" in again.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (b"garbage", "CSR"),
        (csr_pem(make_csr(key=make_key("RSA-1024"))[0]), "2048"),
    ],
)
def test_cert_issue_refusals_are_one_clear_line(data_dir: Path, tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "req.pem").write_bytes(content)
    out = run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"), data_dir=data_dir, check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unknown_profile_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "req.pem").write_bytes(csr_pem(make_csr()[0]))
    out = run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"), "--profile", "nope", data_dir=data_dir, check=False)
    assert out.returncode == 1 and "unknown certificate profile 'nope'" in out.stderr


def test_ca_crl_only_when_due_unless_forced(data_dir: Path, tmp_path: Path) -> None:
    out = run_cli("ca", "crl", "issuing", "--out", str(tmp_path / "a.crl"), data_dir=data_dir)
    assert "not yet in its overlap period" in out.stderr and not (tmp_path / "a.crl").exists()
    before = run_cli("info", "--json", data_dir=data_dir)
    assert before.returncode == 0
    run_cli("ca", "crl", "issuing", "--force", "--out", str(tmp_path / "b.crl"), data_dir=data_dir)
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "b.crl"), "-noout", "-text").stdout
    assert "X509v3 CRL Number" in text


def test_ca_crl_without_an_id_covers_every_crl_publishing_ca(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("init", data_dir=data)
    due = run_cli("ca", "crl", data_dir=data)
    assert [line.split()[2] for line in due.stderr.splitlines()] == ["root", "issuing", "issuing-rsa"]
    assert all("not yet in its overlap period" in line for line in due.stderr.splitlines())
    forced = run_cli("ca", "crl", "--force", data_dir=data)
    assert forced.stderr.splitlines() == [f"issued a new CRL for {ca}" for ca in ("root", "issuing", "issuing-rsa")]
    out = run_cli("ca", "crl", "--force", "--out", str(tmp_path / "x.crl"), data_dir=data, check=False)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "--out needs a CA id" in out.stderr
    assert not (tmp_path / "x.crl").exists()


def test_ca_create_list_and_external(data_dir: Path, tmp_path: Path) -> None:
    run_cli("ca", "create", "corp-root", "--name", "Corp Root", "--key", "RSA-3072", data_dir=data_dir)
    run_cli("ca", "create", "corp-issuing", "--name", "Corp Issuing", "--parent", "corp-root", "--key", "EC-P384",
            data_dir=data_dir)
    run_cli("ca", "create", "ext", "--name", "Ext Issuing", "--external", "--csr-out", str(tmp_path / "ext.csr"),
            data_dir=data_dir)
    assert x509.load_pem_x509_csr((tmp_path / "ext.csr").read_bytes()).is_signature_valid
    rows = {r["id"]: r for r in json.loads(run_cli("ca", "list", "--json", data_dir=data_dir).stdout)}
    assert rows["corp-issuing"]["parent"] == "corp-root" and rows["ext"]["state"] == "awaiting_certificate"
    weak = run_cli("ca", "create", "weak", "--name", "Weak", "--key", "RSA-1024", data_dir=data_dir, check=False)
    assert weak.returncode == 1 and "2048" in weak.stderr
    csr, _ = make_csr()
    (tmp_path / "req.pem").write_bytes(csr_pem(csr))
    pending = run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"), "--ca", "ext", "--profile", "device",
                      data_dir=data_dir, check=False)
    assert pending.returncode == 1 and "waiting for its signed certificate" in pending.stderr


def test_commands_on_an_uninitialized_directory(tmp_path: Path) -> None:
    out = run_cli("cert", "list", data_dir=tmp_path / "empty", check=False)
    assert out.returncode == 1 and "not initialized" in out.stderr


def test_info_json_shows_the_current_static_challenge_and_a_stable_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("init", data_dir=data)
    # a second configuration whose id sorts before the dev one, made later
    run_cli("scep", "config", "create", "aaa", "--static-challenge", data_dir=data)
    run_cli("scep", "static-challenge", "--config", "scep", "--value", "rotated-challenge-1", data_dir=data)
    info = json.loads(run_cli("info", "--json", data_dir=data).stdout)
    scep = info["protocols"]["scep"]
    # init made scep and, for the dev MDM configuration, mdm-scep; then the others by creation
    assert [e["config"] for e in scep] == ["scep", "mdm-scep", "aaa"]
    assert scep[0]["challenge"] == "rotated-challenge-1"
    assert scep[0]["admin"]["username"] == "ndes-admin" and len(scep[0]["admin"]["password"]) >= 16
    creds = json.loads((data / "secrets/dev-credentials.json").read_text())
    assert creds["scep"]["scep"]["admin_password"] == scep[0]["admin"]["password"]
    assert stat.S_IMODE(os.stat(data / "secrets/dev-credentials.json").st_mode) == 0o600
    assert [e["config"] for e in info["protocols"]["acme"]] == ["acme", "acme-eab"]

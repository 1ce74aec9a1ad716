"""End to end with real tools: ``gateway serve`` as a subprocess, the ``gateway`` CLI,
and the openssl CLI verifying chains, parsing CRLs from the CDP URL and asking the
OCSP responder over HTTP (POST via ``openssl ocsp -url``, GET per RFC 6960 A.1).
"""

from __future__ import annotations

import base64
import re
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509

from conformance.harness import GatewayInfo, GatewayProcess, require_client, run_cli

from .support import openssl


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    require_client("openssl")
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    run_cli("init", data_dir=data_dir)
    with GatewayProcess(data_dir) as info:
        yield info


def openssl_csr(tmp: Path, name: str) -> Path:
    key, csr = tmp / f"{name}.key", tmp / f"{name}.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}")
    return csr


def issue(info: GatewayInfo, tmp: Path, name: str) -> Path:
    out = run_cli("cert", "issue", "--csr", str(openssl_csr(tmp, name)), "--profile", "tls-server",
                  data_dir=info.data_dir)
    path = tmp / f"{name}.pem"
    path.write_text(out.stdout)
    return path


def serial_of(path: Path) -> str:
    return format(x509.load_pem_x509_certificate(path.read_bytes()).serial_number, "x")


def test_issued_certificates_verify_against_the_chain(served: GatewayInfo, tmp_path: Path) -> None:
    leaf = issue(served, tmp_path, "verify.example.com")
    ca = served.ca("issuing")
    out = openssl("verify", "-CAfile", served.ca("root")["certificate"], "-untrusted", ca["certificate"], str(leaf))
    assert out.stdout.strip() == f"{leaf}: OK"
    text = openssl("x509", "-in", str(leaf), "-noout", "-text").stdout
    assert ca["crl"] in text and ca["ocsp"] in text
    assert "TLS Web Server Authentication" in text and "DNS:verify.example.com" in text


def test_crl_from_the_cdp_url_lists_revoked_serials_with_reasons(served: GatewayInfo, tmp_path: Path) -> None:
    revoked = issue(served, tmp_path, "revoked.example.com")
    held = issue(served, tmp_path, "held.example.com")
    good = issue(served, tmp_path, "good.example.com")
    run_cli("cert", "revoke", serial_of(revoked), "--reason", "keyCompromise", data_dir=served.data_dir)
    run_cli("cert", "revoke", serial_of(held), "--reason", "certificateHold", data_dir=served.data_dir)
    cdp = x509.load_pem_x509_certificate(good.read_bytes()).extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value[0].full_name[0].value
    with urllib.request.urlopen(cdp, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/pkix-crl"
        (tmp_path / "ca.crl").write_bytes(resp.read())
    text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "ca.crl"), "-noout", "-text").stdout
    flat = text.upper().replace(":", "")
    assert serial_of(revoked).upper() in flat and serial_of(held).upper() in flat
    assert serial_of(good).upper() not in flat
    assert "Key Compromise" in text and "Certificate Hold" in text and "X509v3 CRL Number" in text
    verify = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "ca.crl"), "-noout",
                     "-CAfile", served.ca("issuing")["chain"])
    assert "verify OK" in verify.stdout + verify.stderr
    # A certificate on the CRL fails chain validation with CRL checking.
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(Path(served.ca("issuing")["chain"]).read_text())
    crl_pem = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "ca.crl")).stdout
    (tmp_path / "ca-crl.pem").write_text(crl_pem)
    bad = openssl("verify", "-crl_check", "-CAfile", str(bundle), "-CRLfile", str(tmp_path / "ca-crl.pem"),
                  str(revoked), check=False)
    assert bad.returncode != 0 and "revoked" in (bad.stdout + bad.stderr)
    ok = openssl("verify", "-crl_check", "-CAfile", str(bundle), "-CRLfile", str(tmp_path / "ca-crl.pem"), str(good))
    assert ok.stdout.strip().endswith(": OK")


def _ocsp_statuses(output: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+): (good|revoked|unknown)$", output, re.M))


def test_ocsp_post_good_revoked_unknown_with_nonce(served: GatewayInfo, tmp_path: Path) -> None:
    good = issue(served, tmp_path, "ocsp-good.example.com")
    revoked = issue(served, tmp_path, "ocsp-revoked.example.com")
    run_cli("cert", "revoke", serial_of(revoked), "--reason", "keyCompromise", data_dir=served.data_dir)
    ca = served.ca("issuing")
    out = openssl(
        "ocsp", "-issuer", ca["certificate"], "-cert", str(good), "-cert", str(revoked),
        "-serial", "0x1234567890ABCDEF", "-url", ca["ocsp"], "-CAfile", served.ca("root")["certificate"],
        "-verify_other", ca["certificate"],
    )
    combined = out.stdout + out.stderr
    assert "Response verify OK" in combined
    assert "WARNING" not in combined and "Nonce" not in combined, combined  # nonce echoed and checked
    statuses = _ocsp_statuses(out.stdout)
    assert statuses == {str(good): "good", str(revoked): "revoked", "0x1234567890ABCDEF": "unknown"}
    assert "Reason: keyCompromise" in out.stdout


def test_ocsp_get_per_rfc6960_appendix_a(served: GatewayInfo, tmp_path: Path) -> None:
    good = issue(served, tmp_path, "ocsp-get.example.com")
    ca = served.ca("issuing")
    req = tmp_path / "req.der"
    openssl("ocsp", "-issuer", ca["certificate"], "-cert", str(good), "-no_nonce", "-reqout", str(req))
    encoded = urllib.request.quote(base64.b64encode(req.read_bytes()).decode(), safe="")
    with urllib.request.urlopen(f"{ca['ocsp']}/{encoded}", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        (tmp_path / "resp.der").write_bytes(resp.read())
    out = openssl("ocsp", "-respin", str(tmp_path / "resp.der"), "-issuer", ca["certificate"],
                  "-cert", str(good), "-no_nonce", "-CAfile", served.ca("root")["certificate"],
                  "-verify_other", ca["certificate"])
    assert "Response verify OK" in out.stdout + out.stderr
    assert _ocsp_statuses(out.stdout) == {str(good): "good"}


def test_ocsp_garbage_is_a_malformed_request(served: GatewayInfo, tmp_path: Path) -> None:
    req = urllib.request.Request(served.ca("issuing")["ocsp"], data=b"garbage",
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    (tmp_path / "bad.der").write_bytes(body)
    out = openssl("ocsp", "-respin", str(tmp_path / "bad.der"), "-resp_text", "-noverify", check=False)
    assert "malformedrequest" in (out.stdout + out.stderr).replace(" ", "").lower()


def test_ca_certificates_served_for_aia(served: GatewayInfo, tmp_path: Path) -> None:
    leaf = issue(served, tmp_path, "aia.example.com")
    aia = x509.load_pem_x509_certificate(leaf.read_bytes()).extensions.get_extension_for_class(
        x509.AuthorityInformationAccess).value
    url = next(d.access_location.value for d in aia if d.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS)
    with urllib.request.urlopen(url, timeout=10) as resp:
        cert = x509.load_der_x509_certificate(resp.read())
    assert cert == x509.load_pem_x509_certificate(Path(served.ca("issuing")["certificate"]).read_bytes())


def test_ocsp_signed_request(served: GatewayInfo, tmp_path: Path) -> None:
    good = issue(served, tmp_path, "ocsp-signed.example.com")
    requester = issue(served, tmp_path, "requester.example.com")
    ca = served.ca("issuing")
    out = openssl(
        "ocsp", "-issuer", ca["certificate"], "-cert", str(good), "-url", ca["ocsp"],
        "-signer", str(requester), "-signkey", str(tmp_path / "requester.example.com.key"),
        "-CAfile", served.ca("root")["certificate"], "-verify_other", ca["certificate"],
    )
    assert "Response verify OK" in out.stdout + out.stderr
    assert _ocsp_statuses(out.stdout) == {str(good): "good"}


def test_serve_logs_json_without_secrets_and_shuts_down_cleanly(tmp_path: Path) -> None:
    import json as jsonlib

    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    (data_dir / "config.toml").write_text(
        (data_dir / "config.toml").read_text().replace('log_format = "text"', 'log_format = "json"'))
    proc = GatewayProcess(data_dir)
    info = proc.start()
    with urllib.request.urlopen(f"{info.http}/healthz", timeout=10) as resp:
        assert resp.status == 200
    assert proc.stop() == 0  # SIGTERM: graceful shutdown, exit status 0
    lines = [line for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    records = [jsonlib.loads(line) for line in lines]
    assert any(r["message"] == "shutting down" for r in records)
    assert any(r.get("path") == "/healthz" and r.get("status") == 200 for r in records)
    creds = (data_dir / "secrets" / "dev-credentials.json").read_text()
    secrets = [v for v in jsonlib.loads(creds).values() if isinstance(v, str)]
    log_text = proc.log_path.read_text()
    assert secrets and not any(s in log_text for s in secrets)
    assert (data_dir / "secrets" / "ca-passphrase").read_text().strip() not in log_text

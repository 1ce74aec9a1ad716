"""``gateway init``'s public URL: what issued certificates and ``info`` point at (real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from conformance.harness import run_cli

from .support import csr_pem, make_csr


def _urls(cert: x509.Certificate) -> list[str]:
    cdp = cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    aia = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    urls = [str(n.value) for dp in cdp for n in (dp.full_name or [])]
    urls += [str(d.access_location.value) for d in aia
             if d.access_method in (AuthorityInformationAccessOID.OCSP, AuthorityInformationAccessOID.CA_ISSUERS)]
    return urls


def test_init_refuses_an_unspecified_public_host(tmp_path: Path) -> None:
    for args in (["--host", "0.0.0.0"], ["--host", "::"], ["--public-host", "0.0.0.0"]):
        out = run_cli("init", *args, data_dir=tmp_path / "d", check=False)
        assert out.returncode == 1 and "--public-host" in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "d").exists()


def test_public_url_at_init_reaches_certificates_and_info(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli("init", "--host", "0.0.0.0", "--public-host", "gw.example.net", "--http-port", "9080",
            "--https-port", "9443", data_dir=data)
    info = json.loads(run_cli("info", "--json", data_dir=data).stdout)
    assert info["http"] == "http://gw.example.net:9080" and info["https"] == "https://gw.example.net:9443"
    # the issuing CA made at init and a certificate from `gateway cert issue` agree with it
    issuing = x509.load_pem_x509_certificate((data / "cas" / "issuing.pem").read_bytes())
    (tmp_path / "req.pem").write_bytes(csr_pem(make_csr("a.example.net", ["a.example.net"])[0]))
    leaf = x509.load_pem_x509_certificate(run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"),
                                                  data_dir=data).stdout.encode())
    for cert in (issuing, leaf):
        urls = _urls(cert)
        assert urls and all(u.startswith("http://gw.example.net:9080/") for u in urls), urls
    tls = x509.load_pem_x509_certificate((data / "tls" / "server.pem").read_bytes())
    sans = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "gw.example.net" in sans.get_values_for_type(x509.DNSName)


def test_public_url_with_a_proxy_port(tmp_path: Path) -> None:
    data = tmp_path / "d"
    run_cli("init", "--public-url", "https://gw.example.net", "--public-http-port", "80", data_dir=data)
    info = json.loads(run_cli("info", "--json", data_dir=data).stdout)
    assert info["http"] == "http://gw.example.net:80" and info["https"] == "https://gw.example.net:443"
    (tmp_path / "req.pem").write_bytes(csr_pem(make_csr("b.example.net", ["b.example.net"])[0]))
    leaf = x509.load_pem_x509_certificate(run_cli("cert", "issue", "--csr", str(tmp_path / "req.pem"),
                                                  data_dir=data).stdout.encode())
    assert all(u.startswith("http://gw.example.net:80/") for u in _urls(leaf))
    bad = run_cli("init", "--public-url", "ftp://x/y", data_dir=tmp_path / "e", check=False)
    assert bad.returncode == 1 and "--public-url" in bad.stderr

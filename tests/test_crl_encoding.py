"""CRL encoding checked by the openssl CLI, not just by the library that wrote it."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gateway.ca.backend import RevocationReason
from gateway.errors import BadRequest
from gateway.keys import generate_private_key, signature_hash_for
from gateway.status.crl import EXPIRED_CERTS_ON_CRL, RevokedEntry, build_crl, parse_crl

CRL_URL = "http://crl.example.test/test-ca.crl"
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class ThrowawayCA:
    """A throwaway CA whose certificates and CRLs land as PEM files in one directory."""

    def __init__(self, algorithm: str, directory: Path, *, with_ski: bool = True) -> None:
        self.algorithm = algorithm
        self.dir = directory
        self.key = generate_private_key(algorithm)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Test CA {algorithm}")])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        )
        if with_ski:
            ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
            builder = builder.add_extension(ski, critical=False)
        self.cert = builder.sign(self.key, signature_hash_for(self.key))
        self.pem = self.write("ca.pem", self.cert.public_bytes(Encoding.PEM))

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def issue(self, serial: int, name: str) -> Path:
        key = generate_private_key(self.algorithm)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=10))
            .add_extension(
                x509.CRLDistributionPoints([
                    x509.DistributionPoint([x509.UniformResourceIdentifier(CRL_URL)], None, None, None)
                ]),
                critical=False,
            )
            .sign(self.key, signature_hash_for(self.key))
        )
        return self.write(f"{name}.pem", cert.public_bytes(Encoding.PEM))


@pytest.fixture(params=["RSA-2048", "EC-P384"])
def ca(request: pytest.FixtureRequest, tmp_path: Path) -> ThrowawayCA:
    return ThrowawayCA(request.param, tmp_path)


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


ENTRIES = [
    RevokedEntry(0x1001, NOW - dt.timedelta(hours=2), RevocationReason.key_compromise,
                 NOW - dt.timedelta(days=3)),
    RevokedEntry(0x1002, NOW - dt.timedelta(hours=1), RevocationReason.certificate_hold, None),
    RevokedEntry(0x1003, NOW - dt.timedelta(minutes=5), RevocationReason.unspecified, None),
]


def make_crl(ca: ThrowawayCA, *, idp_url: str | None = CRL_URL, number: int = 42) -> Path:
    der = build_crl(
        issuer_cert=ca.cert,
        issuer_key=ca.key,
        entries=ENTRIES,
        crl_number=number,
        this_update=NOW - dt.timedelta(minutes=1),
        next_update=NOW + dt.timedelta(days=1),
        expired_certs_on_crl=dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        idp_url=idp_url,
    )
    return ca.write("crl.der", der)


def revoked_blocks(text: str) -> dict[str, str]:
    """openssl's CRL text split per revoked serial: {"1001": "...that entry's lines..."}."""
    section = text.split("Revoked Certificates:", 1)[1].split("Signature Algorithm:", 1)[0]
    parts = re.split(r"Serial Number: ([0-9A-F]+)", section)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_openssl_reads_entries_reasons_and_crl_extensions(ca: ThrowawayCA) -> None:
    out = openssl("crl", "-inform", "DER", "-in", make_crl(ca), "-text", "-noout")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"X509v3 CRL Number:\s*\n\s*42\b", text)
    assert "X509v3 Authority Key Identifier" in text
    assert "X509v3 Issuing Distribution Point: critical" in text
    assert f"URI:{CRL_URL}" in text
    # OpenSSL 3.0 knows no name for 2.5.29.60 and prints the OID with the raw value.
    assert "2.5.29.60:" in text
    assert "20200102030405Z" in text

    blocks = revoked_blocks(text)
    assert set(blocks) == {"1001", "1002", "1003"}
    assert "Key Compromise" in blocks["1001"]
    assert "Invalidity Date" in blocks["1001"]
    assert "Certificate Hold" in blocks["1002"]
    assert "Invalidity Date" not in blocks["1002"]
    assert "CRL Reason Code" not in blocks["1003"]
    assert "CRL entry extensions" not in blocks["1003"]


def test_openssl_verifies_signature_and_rejects_other_ca(ca: ThrowawayCA, tmp_path: Path) -> None:
    crl = make_crl(ca)
    ok = openssl("crl", "-inform", "DER", "-in", crl, "-CAfile", ca.pem, "-noout")
    assert ok.returncode == 0, ok.stderr
    assert "verify OK" in ok.stdout + ok.stderr

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = ThrowawayCA(ca.algorithm, other_dir)
    bad = openssl("crl", "-inform", "DER", "-in", crl, "-CAfile", other.pem, "-noout")
    assert "verify OK" not in bad.stdout + bad.stderr


def test_openssl_crl_check_refuses_revoked_and_held_certs_only(ca: ThrowawayCA) -> None:
    crl_pem = ca.write("crl.pem", parse_crl(make_crl(ca).read_bytes()).public_bytes(Encoding.PEM))
    verdicts = {}
    for serial, name in [(0x1001, "revoked"), (0x1002, "held"), (0x1003, "unspecified"), (0x2000, "fine")]:
        leaf = ca.issue(serial, name)
        out = openssl("verify", "-crl_check", "-CAfile", ca.pem, "-CRLfile", crl_pem, leaf)
        verdicts[name] = (out.returncode, out.stdout + out.stderr)
    for name in ("revoked", "held", "unspecified"):
        assert verdicts[name][0] != 0
        assert "certificate revoked" in verdicts[name][1]
    assert verdicts["fine"][0] == 0, verdicts["fine"][1]
    assert "OK" in verdicts["fine"][1]


def test_extensions_as_a_library_sees_them(ca: ThrowawayCA) -> None:
    crl = parse_crl(make_crl(ca, idp_url=None, number=7).read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    expired = crl.extensions.get_extension_for_oid(EXPIRED_CERTS_ON_CRL)
    assert expired.critical is False
    value = core.GeneralizedTime.load(expired.value.value).native
    assert value == dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert crl.is_signature_valid(ca.key.public_key())
    entry = crl.get_revoked_certificate_by_serial_number(0x1001)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == (
        NOW - dt.timedelta(days=3)
    )


def test_aki_is_computed_when_issuer_has_no_ski(tmp_path: Path) -> None:
    ca = ThrowawayCA("EC-P256", tmp_path, with_ski=False)
    crl = parse_crl(make_crl(ca).read_bytes())
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()).digest


def test_empty_crl_and_no_expired_certs_extension(tmp_path: Path) -> None:
    ca = ThrowawayCA("EC-P256", tmp_path)
    der = build_crl(issuer_cert=ca.cert, issuer_key=ca.key, entries=[], crl_number=0,
                    this_update=NOW, next_update=NOW + dt.timedelta(hours=1), expired_certs_on_crl=None)
    crl = parse_crl(der)
    assert len(crl) == 0
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_oid(EXPIRED_CERTS_ON_CRL)


def test_bad_inputs_are_bad_requests(tmp_path: Path) -> None:
    ca = ThrowawayCA("EC-P256", tmp_path)
    for garbage in (b"", b"not a crl", ca.cert.public_bytes(Encoding.DER)):
        with pytest.raises(BadRequest):
            parse_crl(garbage)
    with pytest.raises(BadRequest):
        build_crl(issuer_cert=ca.cert, issuer_key=ca.key, entries=[], crl_number=1,
                  this_update=NOW, next_update=NOW, expired_certs_on_crl=None)

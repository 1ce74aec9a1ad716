"""The certificate builder: real keys, real signatures, checked by the openssl CLI."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.ca.backend import IssueOverrides
from gateway.ca.builder import (
    IssuerContext,
    build_certificate,
    check_proof_of_possession,
    load_csr,
    rfc7093_key_identifier,
)
from gateway.errors import BadCSR, BadKey, BadRequest, BadSignature, PolicyViolation, Unavailable
from gateway.keys import KEY_ALGORITHMS, generate_private_key
from gateway.profiles import default_profiles_dir, parse_profile
from gateway.profiles.model import UPN_OID, Profile

UTC = dt.timezone.utc
NOW = dt.datetime(2031, 5, 17, 12, 0, 0, tzinfo=UTC)
CRL_URL = "http://pki.example.test/crl/issuing.crl"
OCSP_URL = "http://pki.example.test/ocsp"
CA_ISSUERS_URL = "http://pki.example.test/ca/issuing.cer"
PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.7.1")
WWW_SANS = [x509.DNSName("www.example.test"), x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]
serials = iter(range(0x1000, 0x100000))


@functools.lru_cache(maxsize=None)
def key(alg: str, slot: int = 0) -> Any:
    """One cached key per algorithm (and slot), so RSA-4096 is generated once."""
    return generate_private_key(alg)


def profile(name: str, **patch: Any) -> Profile:
    data = tomllib.loads((default_profiles_dir() / f"{name}.toml").read_text())
    for path, value in patch.items():
        node = data
        *parents, last = path.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_profile(data, f"{name}.toml")


def make_ca(
    private_key: Any,
    cn: str,
    *,
    not_before: dt.datetime = NOW - dt.timedelta(days=365),
    not_after: dt.datetime = NOW + dt.timedelta(days=3650),
    path_length: int | None = None,
    with_ski: bool = True,
) -> IssuerContext:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    )
    builder = (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if with_ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private_key.public_key()), critical=False
        )
    cert = builder.sign(private_key, hashes.SHA256())
    return IssuerContext("test-ca", cert, private_key, CRL_URL, OCSP_URL, CA_ISSUERS_URL)


@functools.lru_cache(maxsize=None)
def issuer(alg: str) -> IssuerContext:
    return make_ca(key(alg, 99), f"Test Root {alg}")


def make_csr(
    private_key: Any,
    cn: str | None = "www.example.test",
    sans: list[x509.GeneralName] | None = None,
    extensions: list[tuple[x509.ExtensionType, bool]] = (),
    subject: x509.Name | None = None,
) -> x509.CertificateSigningRequest:
    if subject is None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(private_key, hashes.SHA256())


def build(
    prof: Profile, csr: x509.CertificateSigningRequest | None, ca: IssuerContext | None = None, **kw: Any
) -> x509.Certificate:
    return build_certificate(
        profile=prof,
        issuer=ca or issuer("EC-P384"),
        serial=next(serials),
        public_key=kw.pop("public_key", None),
        csr=csr,
        overrides=kw.pop("overrides", IssueOverrides()),
        now=kw.pop("now", NOW),
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def dns_sans(cert: x509.Certificate) -> list[str]:
    try:
        return ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def openssl_verify(
    tmp_path: Path,
    root: x509.Certificate,
    leaf: x509.Certificate,
    *,
    untrusted: list[x509.Certificate] = (),
    purpose: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict`` at a fixed time (an hour after NOW), never the wall clock."""
    (tmp_path / "ca.pem").write_bytes(pem(root))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    at = str(int((NOW + dt.timedelta(hours=1)).timestamp()))
    cmd = ["openssl", "verify", "-x509_strict", "-attime", at, "-CAfile", str(tmp_path / "ca.pem")]
    if untrusted:
        (tmp_path / "untrusted.pem").write_bytes(b"".join(pem(c) for c in untrusted))
        cmd += ["-untrusted", str(tmp_path / "untrusted.pem")]
    if purpose:
        cmd += ["-purpose", purpose]
    return subprocess.run([*cmd, str(tmp_path / "leaf.pem")], capture_output=True, text=True)


def openssl_text(tmp_path: Path, cert: x509.Certificate) -> str:
    path = tmp_path / "text.pem"
    path.write_bytes(pem(cert))
    cmd = ["openssl", "x509", "-in", str(path), "-noout", "-text"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return out.stdout


def ext(cert: x509.Certificate, cls: type) -> Any:
    return cert.extensions.get_extension_for_class(cls)


# -- the key matrix ---------------------------------------------------------------


@pytest.mark.parametrize("issuer_alg", ["EC-P384", "RSA-3072"])
@pytest.mark.parametrize("subscriber_alg", KEY_ALGORITHMS)
def test_tls_server_certificate_verifies_with_openssl(
    tmp_path: Path, issuer_alg: str, subscriber_alg: str
) -> None:
    ca = issuer(issuer_alg)
    subscriber = key(subscriber_alg)
    csr = make_csr(subscriber, "www.example.test", WWW_SANS)
    cert = build(profile("tls-server"), csr, ca)

    result = openssl_verify(tmp_path, ca.certificate, cert, purpose="sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")
    assert spki(cert.public_key()) == spki(subscriber.public_key())
    assert cert.issuer == ca.certificate.subject
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)  # matched to the issuer key
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    # RFC 5480: no keyEncipherment on EC keys; RSA keys keep it.
    assert ku.value.key_encipherment is subscriber_alg.startswith("RSA")


def test_openssl_text_shows_profile_extensions(tmp_path: Path) -> None:
    csr = make_csr(key("RSA-2048"), "www.example.test", WWW_SANS)
    cert = build(profile("tls-server"), csr, issuer("RSA-3072"))
    text = openssl_text(tmp_path, cert)
    assert "X509v3 Key Usage: critical" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "TLS Web Server Authentication" in text
    assert "TLS Web Client Authentication" not in text
    assert "DNS:www.example.test, IP Address:192.0.2.7" in text
    assert "X509v3 Basic Constraints: critical" in text and "CA:FALSE" in text
    assert "X509v3 CRL Distribution Points" in text and f"URI:{CRL_URL}" in text
    assert f"OCSP - URI:{OCSP_URL}" in text
    assert f"CA Issuers - URI:{CA_ISSUERS_URL}" in text
    assert "X509v3 Subject Key Identifier" in text and "X509v3 Authority Key Identifier" in text


def test_user_profile_openssl_purpose_and_upn(tmp_path: Path) -> None:
    upn = x509.OtherName(UPN_OID, asn1_core.UTF8String("alice@corp.example.test").dump())
    csr = make_csr(key("EC-P256"), "Alice Example", [x509.RFC822Name("alice@example.test"), upn])
    cert = build(profile("user"), csr)
    for purpose in ("smimesign", "sslclient"):
        result = openssl_verify(tmp_path, issuer("EC-P384").certificate, cert, purpose=purpose)
        assert result.returncode == 0, result.stdout + result.stderr
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.test"]
    assert san.get_values_for_type(x509.OtherName) == [upn]
    # ...and the server purpose is refused: the EKU really constrains the certificate.
    assert openssl_verify(tmp_path, issuer("EC-P384").certificate, cert, purpose="sslserver").returncode != 0


# -- identifiers --------------------------------------------------------------------


def _spk_bits(cert: x509.Certificate) -> bytes:
    bit_string = asn1_keys.PublicKeyInfo.load(spki(cert.public_key()))["public_key"]
    contents = bit_string.contents
    assert contents[0] == 0  # no unused bits
    return contents[1:]


@pytest.mark.parametrize("alg", ["RSA-2048", "EC-P256", "EC-P521"])
def test_ski_is_leftmost_160_bits_of_sha256(alg: str) -> None:
    cert = build(profile("tls-server"), make_csr(key(alg), "host.example.test"))
    ski = ext(cert, x509.SubjectKeyIdentifier).value.digest
    assert ski == hashlib.sha256(_spk_bits(cert)).digest()[:20]
    assert rfc7093_key_identifier(cert.public_key()) == ski
    assert ski != x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def test_ski_methods_sha1_and_none() -> None:
    csr = make_csr(key("EC-P256"), "host.example.test")
    sha1 = build(profile("tls-server", identifiers__subject_key_identifier="sha1"), csr)
    assert ext(sha1, x509.SubjectKeyIdentifier).value.digest == hashlib.sha1(_spk_bits(sha1)).digest()
    none = build(profile("tls-server", identifiers__subject_key_identifier="none"), csr)
    with pytest.raises(x509.ExtensionNotFound):
        ext(none, x509.SubjectKeyIdentifier)


def test_aki_comes_from_issuer_ski_or_is_computed() -> None:
    csr = make_csr(key("EC-P256"), "host.example.test")
    ca = issuer("EC-P384")
    cert = build(profile("tls-server"), csr, ca)
    ca_ski = ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    bare = make_ca(key("EC-P256", 98), "No SKI Root", with_ski=False)
    cert = build(profile("tls-server"), csr, bare)
    expected = x509.SubjectKeyIdentifier.from_public_key(bare.certificate.public_key()).digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == expected


def test_identifier_extensions_can_be_switched_off() -> None:
    prof = profile(
        "tls-server",
        identifiers__authority_key_identifier=False,
        identifiers__crl_distribution_point=False,
        identifiers__aia_ocsp=False,
    )
    cert = build(prof, make_csr(key("EC-P256"), "host.example.test"))
    for cls in (x509.AuthorityKeyIdentifier, x509.CRLDistributionPoints):
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, cls)
    aia = ext(cert, x509.AuthorityInformationAccess).value
    assert [d.access_method for d in aia] == [x509.AuthorityInformationAccessOID.CA_ISSUERS]


# -- subject and SAN policy ------------------------------------------------------------


def test_cn_as_dns_adds_a_san_only_for_host_names() -> None:
    cert = build(profile("tls-server"), make_csr(key("EC-P256"), "Host.Example.Test"))
    assert dns_sans(cert) == ["Host.Example.Test"]

    # Already present (case-insensitively): not duplicated.
    sans = [x509.DNSName("HOST.example.test"), x509.DNSName("alt.example.test")]
    csr = make_csr(key("EC-P256"), "host.example.test", sans)
    cert = build(profile("tls-server"), csr)
    assert dns_sans(cert) == ["HOST.example.test", "alt.example.test"]

    device = profile("device", san__cn_as_dns=True)
    cert = build(device, make_csr(key("EC-P256"), "Printer 12"))
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.SubjectAlternativeName)
    without = build(profile("device"), make_csr(key("EC-P256"), "printer.example.test"))
    with pytest.raises(x509.ExtensionNotFound):
        ext(without, x509.SubjectAlternativeName)


def test_tls_server_requires_a_san() -> None:
    with pytest.raises(PolicyViolation, match="at least one subject alternative name"):
        build(profile("tls-server"), make_csr(key("EC-P256"), "Not A Hostname"))


def format_profile(fmt: str) -> Profile:
    return profile("device", subject={"mode": "format", "format": fmt, "require_cn": True})


def test_rdn_format_substitution() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "dev-0042"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN123"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Client Supplied Org"),
        ]
    )
    csr = make_csr(key("EC-P256"), subject=subject, sans=[x509.RFC822Name("ops@example.test")])
    prof = format_profile(
        r"CN=<cn>,serialNumber=<csr.serialNumber>,E=<csr.email>,OU=<site>,O=Example\, Inc.,C=DE"
    )
    cert = build(prof, csr, overrides=IssueOverrides(variables={"site": "Berlin"}))
    assert cert.subject.rfc4514_string() == (
        r"CN=dev-0042,2.5.4.5=SN123,1.2.840.113549.1.9.1=ops@example.test,OU=Berlin,O=Example\, Inc.,C=DE"
    )
    # The X.509 order is the reverse of the written order: C first.
    assert list(cert.subject)[0].oid == NameOID.COUNTRY_NAME
    # Request variables win over built-ins.
    cert = build(prof, csr, overrides=IssueOverrides(variables={"site": "Paris", "cn": "override-cn"}))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "override-cn"


def test_rdn_format_missing_variable_is_named() -> None:
    csr = make_csr(key("EC-P256"), "dev-0042")
    with pytest.raises(PolicyViolation, match="<site>"):
        build(format_profile("CN=<cn>,OU=<site>"), csr)
    with pytest.raises(PolicyViolation, match="<csr.serialNumber>"):
        prof = format_profile("CN=<cn>,serialNumber=<csr.serialNumber>")
        build(prof, csr, overrides=IssueOverrides(variables={"site": "x"}))
    with pytest.raises(PolicyViolation, match="attribute C:"):
        prof = format_profile("CN=<cn>,C=<country>")
        build(prof, csr, overrides=IssueOverrides(variables={"country": "Germany"}))


def test_subject_modes_override_and_require_cn() -> None:
    prof = profile("device", subject={"mode": "override"})
    csr = make_csr(key("EC-P256"), "from-csr")
    with pytest.raises(PolicyViolation, match="subject"):
        build(prof, csr)
    forced = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "from-enrollment")])
    assert build(prof, csr, overrides=IssueOverrides(subject=forced)).subject == forced
    with pytest.raises(PolicyViolation, match="common name"):
        build(profile("tls-client"), make_csr(key("EC-P256"), None, [x509.DNSName("a.example.test")]))


@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_overlong_common_name_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="longer than 64"):
        long_cn = x509.NameAttribute(NameOID.COMMON_NAME, "x" * 65, _validate=False)
        build(profile("device"), make_csr(key("EC-P256"), subject=x509.Name([long_cn])))


def test_san_modes() -> None:
    csr = make_csr(key("EC-P256"), "dev", [x509.DNSName("csr.example.test")])
    extra = IssueOverrides(sans=(x509.DNSName("enrolled.example.test"),))
    assert dns_sans(build(profile("device"), csr)) == ["csr.example.test"]
    assert dns_sans(build(profile("device"), csr, overrides=extra)) == ["enrolled.example.test"]
    assert dns_sans(build(profile("device", san__mode="override"), csr)) == []
    override = profile("device", san__mode="override")
    assert dns_sans(build(override, csr, overrides=extra)) == ["enrolled.example.test"]
    merge = profile("device", san__mode="merge")
    assert dns_sans(build(merge, csr, overrides=extra)) == ["csr.example.test", "enrolled.example.test"]
    assert dns_sans(build(profile("device", san__mode="none"), csr, overrides=extra)) == []


@pytest.mark.parametrize(
    "name",
    [
        x509.DNSName("foo..example.test"),
        x509.DNSName("-foo.example.test"),
        x509.DNSName("a*.example.test"),
        x509.DNSName("*.*.example.test"),
        x509.DNSName("foo.*.example.test"),
        x509.DNSName("*.test"),
        x509.DNSName("under_score.example.test"),
        x509.DNSName("192.0.2.1"),
        x509.DNSName("x" * 64 + ".example.test"),
        x509.RFC822Name("no-at-sign.example.test"),
        x509.RFC822Name("a b@example.test"),
        x509.RFC822Name("alice@bad_domain.test"),
        x509.UniformResourceIdentifier("not a uri"),
        x509.IPAddress(ipaddress.ip_network("192.0.2.0/24")),
        x509.OtherName(UPN_OID, asn1_core.OctetString(b"alice@example.test").dump()),
    ],
    ids=repr,
)
def test_invalid_san_values_are_refused(name: x509.GeneralName) -> None:
    with pytest.raises(PolicyViolation):
        build(profile("device"), make_csr(key("EC-P256"), "dev", [name]))


def test_wildcard_and_san_types() -> None:
    csr = make_csr(key("EC-P256"), None, [x509.DNSName("*.example.test")])
    cert = build(profile("tls-server"), csr)
    assert dns_sans(cert) == ["*.example.test"]
    with pytest.raises(PolicyViolation, match="email"):
        csr = make_csr(key("EC-P256"), "a.example.test", [x509.RFC822Name("a@example.test")])
        build(profile("tls-server"), csr)
    with pytest.raises(PolicyViolation, match="dns"):
        build(profile("user"), make_csr(key("EC-P256"), "Alice", [x509.DNSName("a.example.test")]))
    with pytest.raises(PolicyViolation, match="directoryName"):
        build(profile("device"), make_csr(key("EC-P256"), "dev", [x509.DirectoryName(x509.Name([]))]))


def test_empty_subject_needs_san_and_makes_it_critical(tmp_path: Path) -> None:
    with pytest.raises(PolicyViolation, match="neither a subject"):
        build(profile("device"), make_csr(key("EC-P256"), None))
    cert = build(profile("tls-server"), make_csr(key("EC-P256"), None, [x509.DNSName("only-san.example.test")]))
    assert len(cert.subject) == 0
    assert ext(cert, x509.SubjectAlternativeName).critical
    result = openssl_verify(tmp_path, issuer("EC-P384").certificate, cert, purpose="sslserver")
    assert result.returncode == 0, result.stdout + result.stderr


# -- CSR handling ---------------------------------------------------------------------


def test_load_csr_pem_and_der() -> None:
    csr = make_csr(key("EC-P256"))
    assert load_csr(csr.public_bytes(serialization.Encoding.PEM)) == csr
    assert load_csr(b"\n  " + csr.public_bytes(serialization.Encoding.PEM)) == csr
    assert load_csr(csr.public_bytes(serialization.Encoding.DER)) == csr


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n",
        b"\x30" * 70000,
    ],
    ids=["empty", "garbage", "short-der", "pem-junk", "huge"],
)
def test_garbage_is_bad_csr(data: bytes) -> None:
    with pytest.raises(BadCSR):
        load_csr(data)


def test_tampered_signature_is_bad_signature() -> None:
    good = make_csr(key("RSA-2048"), "tamper.example.test", [x509.DNSName("tamper.example.test")])
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature BIT STRING
    csr = load_csr(bytes(der))
    with pytest.raises(BadSignature):
        check_proof_of_possession(csr)
    with pytest.raises(BadSignature):
        build(profile("tls-server"), csr)
    check_proof_of_possession(make_csr(key("RSA-2048")))  # the untouched one passes


def test_weak_and_unlisted_keys_are_bad_key() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadKey, match="2048"):
        build(profile("tls-server"), make_csr(weak, "weak.example.test", [x509.DNSName("weak.example.test")]))
    ec_only = profile("device", key_policy={"allowed": ["EC-P256", "EC-P384"]})
    with pytest.raises(BadKey, match="RSA-2048"):
        build(ec_only, make_csr(key("RSA-2048"), "dev"))
    build(ec_only, make_csr(key("EC-P384"), "dev"))
    with pytest.raises(BadKey):
        build(profile("tls-server"), make_csr(ec.generate_private_key(ec.SECP256K1()), "k.example.test"))


def test_csr_key_must_match_given_public_key() -> None:
    with pytest.raises(BadCSR, match="does not match"):
        build(profile("device"), make_csr(key("EC-P256"), "dev"), public_key=key("EC-P384").public_key())


# -- request extensions --------------------------------------------------------------------


def _private_ext() -> tuple[x509.ExtensionType, bool]:
    return x509.UnrecognizedExtension(PRIVATE_OID, b"\x0c\x05hello"), False


def test_disallowed_csr_extension_is_refused_copied_or_dropped() -> None:
    csr = make_csr(key("EC-P256"), "dev", extensions=[_private_ext()])
    strict = profile("device", extensions={"allowed": [], "ignore_unknown_extensions": False})
    with pytest.raises(PolicyViolation, match=PRIVATE_OID.dotted_string):
        build(strict, csr)

    allowed = profile("device", extensions={"allowed": [PRIVATE_OID.dotted_string]})
    copied = build(allowed, csr).extensions.get_extension_for_oid(PRIVATE_OID)
    assert copied.value.value == b"\x0c\x05hello" and not copied.critical

    lenient = profile("device", extensions={"allowed": [], "ignore_unknown_extensions": True})
    with pytest.raises(x509.ExtensionNotFound):
        build(lenient, csr).extensions.get_extension_for_oid(PRIVATE_OID)


def test_understood_csr_extensions_are_not_unknown() -> None:
    strict = profile("device", extensions={"allowed": [], "ignore_unknown_extensions": False})
    ms_template_oid = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2")
    ms_template = x509.UnrecognizedExtension(ms_template_oid, b"\x1e\x08\x00U\x00s\x00e\x00r")
    ku = x509.KeyUsage(True, True, True, True, True, False, False, False, False)
    csr = make_csr(
        key("EC-P256"),
        "dev",
        extensions=[
            (ms_template, False),
            (ku, True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.SubjectKeyIdentifier(b"\x01" * 20), False),
        ],
    )
    cert = build(strict, csr)
    # Profile values win over what the CSR asked for.
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    assert not ext(cert, x509.KeyUsage).value.content_commitment
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest == rfc7093_key_identifier(cert.public_key())
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2"))


def test_csr_asking_for_ca_under_leaf_profile_is_refused() -> None:
    ask_ca = x509.BasicConstraints(ca=True, path_length=None)
    csr = make_csr(key("EC-P256"), "sneaky", extensions=[(ask_ca, True)])
    with pytest.raises(PolicyViolation, match="CA"):
        build(profile("device", extensions={"ignore_unknown_extensions": True}), csr)


def test_override_extensions_follow_the_same_policy() -> None:
    csr = make_csr(key("EC-P256"), "dev")
    private = x509.Extension(PRIVATE_OID, False, x509.UnrecognizedExtension(PRIVATE_OID, b"\x05\x00"))
    with_private = IssueOverrides(extensions=(private,))
    with pytest.raises(PolicyViolation, match=PRIVATE_OID.dotted_string):
        build(profile("device", extensions={"ignore_unknown_extensions": False}), csr, overrides=with_private)
    allowed = profile("device", extensions={"allowed": [PRIVATE_OID.dotted_string]})
    cert = build(allowed, csr, overrides=with_private)
    assert cert.extensions.get_extension_for_oid(PRIVATE_OID).value.value == b"\x05\x00"
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    managed = x509.Extension(x509.ExtensionOID.KEY_USAGE, True, usage)
    with pytest.raises(PolicyViolation, match="set by the profile"):
        build(profile("device"), csr, overrides=IssueOverrides(extensions=(managed,)))


def test_must_staple_is_copied_by_tls_server() -> None:
    feature = x509.TLSFeature([x509.TLSFeatureType.status_request])
    csr = make_csr(key("EC-P256"), "staple.example.test", extensions=[(feature, False)])
    cert = build(profile("tls-server"), csr)
    assert ext(cert, x509.TLSFeature).value == feature


# -- validity ---------------------------------------------------------------------------


def test_default_validity_and_backdate() -> None:
    cert = build(profile("tls-server"), make_csr(key("EC-P256"), "v.example.test"))
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=90)
    device = build(profile("device"), make_csr(key("EC-P256"), "dev"))
    assert device.not_valid_after_utc == NOW.replace(year=2032)  # P1Y, calendar-aware


def test_requested_validity_up_to_max() -> None:
    csr = make_csr(key("EC-P256"), "v.example.test")
    cert = build(profile("tls-server"), csr, overrides=IssueOverrides(validity=dt.timedelta(days=397)))
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=397)
    with pytest.raises(PolicyViolation, match="maximum"):
        build(profile("tls-server"), csr, overrides=IssueOverrides(validity=dt.timedelta(days=398)))
    not_after = NOW + dt.timedelta(days=10, hours=3)
    cert = build(profile("tls-server"), csr, overrides=IssueOverrides(not_after=not_after))
    assert cert.not_valid_after_utc == not_after
    with pytest.raises(PolicyViolation, match="past"):
        build(profile("tls-server"), csr, overrides=IssueOverrides(not_after=NOW - dt.timedelta(days=1)))
    with pytest.raises(BadRequest):
        both = IssueOverrides(not_after=not_after, validity=dt.timedelta(days=1))
        build(profile("tls-server"), csr, overrides=both)
    not_before = NOW + dt.timedelta(days=1)
    cert = build(profile("tls-server"), csr, overrides=IssueOverrides(not_before=not_before))
    assert cert.not_valid_before_utc == not_before
    assert cert.not_valid_after_utc == not_before + dt.timedelta(days=90)


def test_requested_validity_beyond_ca_is_refused_default_is_clamped() -> None:
    ca_end = NOW + dt.timedelta(days=30)
    ca_start = NOW - dt.timedelta(minutes=1)
    short = make_ca(key("EC-P256", 97), "Short Lived CA", not_before=ca_start, not_after=ca_end)
    csr = make_csr(key("EC-P256"), "v.example.test")
    with pytest.raises(PolicyViolation, match="validity beyond the issuing CA"):
        build(profile("tls-server"), csr, short, overrides=IssueOverrides(validity=dt.timedelta(days=60)))
    with pytest.raises(PolicyViolation, match="validity beyond the issuing CA"):
        past_ca = IssueOverrides(not_after=ca_end + dt.timedelta(seconds=1))
        build(profile("tls-server"), csr, short, overrides=past_ca)
    cert = build(profile("tls-server"), csr, short)
    assert cert.not_valid_after_utc == ca_end
    # not_before never precedes the CA's own not_before, despite the 5 minute backdate.
    assert cert.not_valid_before_utc == ca_start
    with pytest.raises(Unavailable):
        build(profile("tls-server"), csr, short, now=ca_end + dt.timedelta(days=1))


# -- server-side keys and CA certificates ---------------------------------------------------


def test_server_generated_key_without_csr(tmp_path: Path) -> None:
    generated = generate_private_key("EC-P384")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiosk.example.test")])
    cert = build(
        profile("tls-client"),
        None,
        public_key=generated.public_key(),
        overrides=IssueOverrides(subject=subject, sans=(x509.DNSName("kiosk.example.test"),)),
    )
    assert cert.subject == subject
    assert dns_sans(cert) == ["kiosk.example.test"]
    result = openssl_verify(tmp_path, issuer("EC-P384").certificate, cert, purpose="sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(BadRequest):
        build(profile("tls-client"), None)


def test_sub_ca_chain_verifies(tmp_path: Path) -> None:
    root = issuer("RSA-3072")
    sub_key = key("EC-P384", 5)
    sub_cert = build(profile("sub-ca"), make_csr(sub_key, "Issuing CA 1"), root)
    bc = ext(sub_cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ext(sub_cert, x509.KeyUsage).value.key_cert_sign
    sub = IssuerContext("sub", sub_cert, sub_key, CRL_URL, OCSP_URL, CA_ISSUERS_URL)
    leaf = build(profile("tls-server"), make_csr(key("RSA-2048"), "deep.example.test"), sub)
    result = openssl_verify(tmp_path, root.certificate, leaf, untrusted=[sub_cert], purpose="sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    # Below a pathLen 0 CA no further CA may be issued.
    with pytest.raises(PolicyViolation, match="path length"):
        build(profile("sub-ca"), make_csr(key("EC-P256", 6), "Too Deep"), sub)
    # Without the sub CA in the chain openssl must fail: the check can fail.
    assert openssl_verify(tmp_path, root.certificate, leaf).returncode != 0


def test_miswired_issuer_is_refused() -> None:
    ca = issuer("EC-P384")
    wrong = IssuerContext("bad", ca.certificate, key("EC-P384", 1))
    with pytest.raises(Exception) as info:
        build(profile("device"), make_csr(key("EC-P256"), "dev"), wrong)
    assert "does not match" in str(info.value)

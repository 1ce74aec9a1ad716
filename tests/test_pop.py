"""Proof of possession (gateway/ca/pop.py): strict by default; SHA-1 RSA signatures and
the Windows MDM client's PrintableStrings only when a configuration's CsrPolicy says so,
and even then only when the requested key really signed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from gateway.ca.backend import CsrPolicy, IssueOverrides
from gateway.ca.builder import check_proof_of_possession, load_csr
from gateway.ca.overrides import overrides_from_json, overrides_to_json
from gateway.edge import der
from gateway.errors import BadCSR, BadSignature

from .support import make_key, openssl

SHA1 = CsrPolicy(sha1_signatures=True)
LEGACY = CsrPolicy(legacy_strings=True)
OIW_SHA1_RSA = "1.3.14.3.2.29"


def openssl_csr(tmp_path: Path, *args: str) -> bytes:
    """openssl still signs requests with SHA-1 (cryptography will not), as old clients do."""
    out = tmp_path / "req.der"
    openssl("req", "-new", "-nodes", "-keyout", str(tmp_path / "req.key"), "-subj", "/CN=old-client",
            "-outform", "DER", "-out", str(out), *args)
    return out.read_bytes()


def with_outer_algorithm(data: bytes, oid: str) -> bytes:
    """The same request with another signatureAlgorithm OID (outside what is signed)."""
    tbs, _, signature = der.children(data)
    return der.sequence(tbs, der.sequence(der.oid(oid), der.null()), signature)


def flip_last(data: bytes) -> bytes:
    out = bytearray(data)
    out[-1] ^= 1
    return bytes(out)


def test_sha1_rsa_is_refused_by_default_and_accepted_when_the_policy_allows(tmp_path: Path) -> None:
    data = openssl_csr(tmp_path, "-newkey", "rsa:2048", "-sha1")
    csr = load_csr(data)
    assert csr.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.5"
    with pytest.raises(BadSignature, match="SHA-1"):
        check_proof_of_possession(csr)
    check_proof_of_possession(csr, SHA1)
    oiw = load_csr(with_outer_algorithm(data, OIW_SHA1_RSA))  # what the Windows MDM client writes
    with pytest.raises(BadSignature, match="SHA-1"):
        check_proof_of_possession(oiw)
    check_proof_of_possession(oiw, SHA1)


def test_a_sha1_signature_that_does_not_verify_is_refused_even_when_allowed(tmp_path: Path) -> None:
    data = openssl_csr(tmp_path, "-newkey", "rsa:2048", "-sha1")
    for tampered in (flip_last(data), flip_last(with_outer_algorithm(data, OIW_SHA1_RSA))):
        with pytest.raises(BadSignature, match="does not verify"):
            check_proof_of_possession(load_csr(tampered), SHA1)


def test_ecdsa_with_sha1_stays_refused(tmp_path: Path) -> None:
    """The option covers the RSA signatures Windows sends, nothing else."""
    data = openssl_csr(tmp_path, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-sha1")
    with pytest.raises(BadSignature):
        check_proof_of_possession(load_csr(data), CsrPolicy(sha1_signatures=True, legacy_strings=True))


def legacy_csr(value: bytes, *, key: rsa.RSAPrivateKey | None = None) -> tuple[bytes, rsa.RSAPrivateKey]:
    """A SHA-256 request whose CN is a PrintableString holding ``value`` (e.g. ``!`` and a
    NUL, as the Windows MDM client writes it): built by hand, no library writes one."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    placeholder = b"P" * len(value)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, placeholder.decode(),
                                                       _type=_ASN1Type.PrintableString)]))
           .sign(key, hashes.SHA256()))
    tbs = csr.tbs_certrequest_bytes
    assert tbs.count(b"\x13" + bytes([len(value)]) + placeholder) == 1
    tbs = tbs.replace(b"\x13" + bytes([len(value)]) + placeholder, b"\x13" + bytes([len(value)]) + value)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = der.sequence(der.oid("1.2.840.113549.1.1.11"), der.null())
    return der.sequence(tbs, algorithm, der.bit_string(signature)), key


def test_legacy_printable_strings_are_read_only_when_the_policy_allows() -> None:
    data, _ = legacy_csr(b"device!1E08\x00")
    with pytest.raises(BadCSR):
        load_csr(data)
    csr = load_csr(data, legacy_strings=True)
    (cn,) = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "device!1E08\x00" and cn._type is _ASN1Type.UTF8String
    with pytest.raises(BadSignature, match="does not verify"):
        check_proof_of_possession(csr)  # the retagged bytes are not what the key signed
    check_proof_of_possession(csr, LEGACY)  # the original tagging is
    pem = csr.public_bytes(serialization.Encoding.PEM)  # a held request keeps the repaired form
    check_proof_of_possession(load_csr(pem), LEGACY)


def test_a_legacy_request_signed_by_another_key_is_refused() -> None:
    data, _ = legacy_csr(b"device!1E08\x00")
    with pytest.raises(BadSignature):
        check_proof_of_possession(load_csr(flip_last(data), legacy_strings=True), LEGACY)
    other, _ = legacy_csr(b"device!1E08\x00")
    tbs, algorithm, _ = der.children(data)
    _, _, foreign_signature = der.children(other)
    with pytest.raises(BadSignature):
        check_proof_of_possession(load_csr(der.sequence(tbs, algorithm, foreign_signature), legacy_strings=True),
                                  LEGACY)


def test_a_genuine_utf8_string_with_the_same_characters_still_verifies() -> None:
    key = make_key()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device!1E08")]))
           .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    check_proof_of_possession(csr)
    check_proof_of_possession(csr, LEGACY)


def test_the_policy_is_kept_with_a_held_request() -> None:
    assert "csr_policy" not in overrides_to_json(IssueOverrides())  # stored rows of other protocols unchanged
    held = overrides_from_json(overrides_to_json(IssueOverrides(csr_policy=CsrPolicy(True, True))))
    assert held.csr_policy == CsrPolicy(sha1_signatures=True, legacy_strings=True)
    assert overrides_from_json({}).csr_policy == CsrPolicy()

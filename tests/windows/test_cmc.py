"""The three MS-WSTEP request token forms and the CMC PKIResponse, with real keys and the
MS-WSTEP 4.1.1.1 capture (read from ../shared/captures at test time)."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.harness import SHARED_CAPTURES, in_ci
from gateway.door import CsrPolicy
from gateway.edge import cms as ecms
from gateway.edge import der
from gateway.errors import BadSignature
from protocols.windows import cmc
from tests.support import make_csr, tamper_signature

WSTEP = SHARED_CAPTURES / "xcep-wstep" / "ms-wstep"
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def require(path: Path) -> Path:
    if path.exists():
        return path
    if in_ci():
        pytest.fail(f"shared captures missing at {path}")
    pytest.skip(f"shared captures missing at {path}")
    raise AssertionError("unreachable")


def self_signed(cn: str, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert, key


def pki_data(csr: x509.CertificateSigningRequest, body_part_id: int = 7) -> bytes:
    tcr = cmc.TaggedCertificationRequest({
        "body_part_id": body_part_id,
        "certification_request": core.Any.load(csr.public_bytes(serialization.Encoding.DER)),
    })
    tagged = der.tlv(0xA0, bytes(tcr.contents))  # TaggedRequest tcr: [0] IMPLICIT
    return der.sequence(der.sequence(), der.sequence(tagged), der.sequence(), der.sequence())


def signed(content: bytes, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, *,
           content_type: str = "data", certificates: tuple[x509.Certificate, ...] | None = None,
           by_key_id: bool = False) -> bytes:
    out = ecms.sign(content, ecms.Signer(cert, key), digest_name="sha256", signing_time=NOW,
                    certificates=(cert,) if certificates is None else certificates, content_type=content_type)
    if not by_key_id:
        return out
    info = cms.ContentInfo.load(out)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    si = info["content"]["signer_infos"][0]
    si["version"] = "v3"
    si["sid"] = cms.SignerIdentifier({"subject_key_identifier": ski})
    return bytes(info.dump(force=True))


def test_the_spec_example_labelled_pkcs7_is_a_bare_pkcs10() -> None:
    """The bytes decide the form (MS-WSTEP 4.1.1.1 labels a PKCS#10 ``#PKCS7``). The
    example is signed with SHA-1: read under a policy that accepts it (a Windows
    configuration's), refused under the strict one; a SHA-256 PKCS#10 needs neither."""
    data = require(WSTEP / "4.1.1.1-RST-Issue-PKCS10-request.bst.p10.der").read_bytes()
    assert cmc.classify(data) == "pkcs10"
    assert cmc.parse_request_token(data, CsrPolicy(sha1_signatures=True)).form == "pkcs10"
    with pytest.raises(BadSignature, match="SHA-1"):
        cmc.parse_request_token(data)
    csr, _ = make_csr()
    raw = csr.public_bytes(serialization.Encoding.DER)
    token = cmc.parse_request_token(raw)
    assert token.form == "pkcs10" and token.signer is None and token.body_part_id is None
    assert token.csr.public_bytes(serialization.Encoding.DER) == raw


def test_bare_pkcs10_with_a_bad_signature_is_refused() -> None:
    csr, _ = make_csr()
    with pytest.raises(Exception) as exc:
        cmc.parse_request_token(tamper_signature(csr))
    assert "signature" in str(exc.value)


def test_cmc_full_pki_request_signed_with_the_requested_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr, _ = make_csr("cmc.example.com", key=key)
    cert, _ = self_signed("throwaway", key)
    token = cmc.parse_request_token(signed(pki_data(csr, 7), cert, key, content_type=cmc.ID_CCT_PKI_DATA,
                                           certificates=(), by_key_id=True))
    assert token.form == "cmc" and token.body_part_id == 7 and token.signer is None
    assert token.csr.subject == csr.subject


def test_cmc_signed_by_a_key_that_is_not_the_requested_one_is_refused() -> None:
    csr, _ = make_csr("cmc.example.com")
    other = ec.generate_private_key(ec.SECP256R1())
    cert, _ = self_signed("other", other)
    with pytest.raises(cmc.InvalidRequestToken):
        cmc.parse_request_token(signed(pki_data(csr), cert, other, content_type=cmc.ID_CCT_PKI_DATA,
                                       certificates=(), by_key_id=True))


def test_pkcs7_renewal_returns_the_verified_signer() -> None:
    old_cert, old_key = self_signed("old.example.com")
    csr, _ = make_csr("old.example.com")
    token = cmc.parse_request_token(signed(csr.public_bytes(serialization.Encoding.DER), old_cert, old_key))
    assert token.form == "pkcs7" and token.signer == old_cert


def test_cmc_renewal_signed_by_the_old_certificate() -> None:
    old_cert, old_key = self_signed("old.example.com")
    csr, _ = make_csr("old.example.com")
    token = cmc.parse_request_token(signed(pki_data(csr, 3), old_cert, old_key, content_type=cmc.ID_CCT_PKI_DATA))
    assert token.form == "cmc" and token.signer == old_cert and token.body_part_id == 3


def test_nested_renewal_inner_by_new_key_outer_by_old_certificate() -> None:
    new_key = ec.generate_private_key(ec.SECP256R1())
    csr, _ = make_csr("old.example.com", key=new_key)
    throwaway, _ = self_signed("new", new_key)
    inner = signed(pki_data(csr, 1), throwaway, new_key, content_type=cmc.ID_CCT_PKI_DATA,
                   certificates=(), by_key_id=True)
    old_cert, old_key = self_signed("old.example.com")
    token = cmc.parse_request_token(signed(inner, old_cert, old_key))
    assert token.form == "pkcs7" and token.signer == old_cert and token.body_part_id == 1


def test_renewal_whose_signature_does_not_verify_is_refused() -> None:
    old_cert, old_key = self_signed("old.example.com")
    csr, _ = make_csr("old.example.com")
    data = signed(csr.public_bytes(serialization.Encoding.DER), old_cert, old_key)
    info = cms.ContentInfo.load(data)
    sig = bytearray(info["content"]["signer_infos"][0]["signature"].native)
    sig[-1] ^= 1
    info["content"]["signer_infos"][0]["signature"] = bytes(sig)
    with pytest.raises(cmc.InvalidRequestToken):
        cmc.parse_request_token(bytes(info.dump(force=True)))


def test_garbage_and_detached_signatures_are_refused() -> None:
    with pytest.raises(cmc.InvalidRequestToken):
        cmc.parse_request_token(b"\x30\x03\x02\x01\x00" + b"x")
    with pytest.raises(cmc.InvalidRequestToken):
        cmc.parse_request_token(b"")
    old_cert, old_key = self_signed("old")
    info = cms.ContentInfo.load(signed(b"", old_cert, old_key))
    info["content"]["encap_content_info"] = {"content_type": "data"}
    with pytest.raises(cmc.InvalidRequestToken):
        cmc.parse_request_token(bytes(info.dump(force=True)))


def test_pki_response_names_the_body_part_and_carries_the_chain() -> None:
    ca, ca_key = self_signed("ca")
    leaf, _ = self_signed("leaf")
    content = cmc.response_content(cmc.SUCCESS, 7, "Issued", issued=leaf)
    for signer in (None, ecms.Signer(ca, ca_key)):
        data = cmc.pki_response(content, [leaf, ca], signer=signer, signing_time=NOW)
        statuses, certs = cmc.read_pki_response(data)
        assert statuses == [(cmc.SUCCESS, [7], "Issued")]
        assert set(certs) == {leaf, ca}  # the signer here is the CA, already among them
        info = ecms.load_content_info(data)
        assert info["content"]["encap_content_info"]["content_type"].dotted == cmc.ID_CCT_PKI_RESPONSE
        if signer is not None:
            si = info["content"]["signer_infos"][0]
            ecms.verify_signer_info(si, ca, content)
    sha1 = hashlib.sha1(leaf.public_bytes(serialization.Encoding.DER)).digest()
    assert sha1 in content  # the issued-certificate hash AD CS adds


def test_the_spec_response_reads_with_our_reader() -> None:
    """Our reader understands the PKIResponse AD CS sent in the 4.1.1.2 example."""
    import base64
    import re

    text = require(WSTEP / "4.1.1.2-RSTRC-Issued-response.xml").read_text()
    b64 = re.search(r'#PKCS7"[^>]*>([^<]+)<', text)
    assert b64 is not None
    statuses, certs = cmc.read_pki_response(base64.b64decode(b64.group(1)))
    assert statuses[0][0] == cmc.SUCCESS and statuses[0][2] == "Issued"
    assert len(certs) == 3


def test_cmc_with_crmf_or_nested_requests_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr, _ = make_csr("cmc.example.com", key=key)
    cert, _ = self_signed("throwaway", key)
    tcr = der.tlv(0xA0, bytes(cmc.TaggedCertificationRequest({
        "body_part_id": 1,
        "certification_request": core.Any.load(csr.public_bytes(serialization.Encoding.DER)),
    }).contents))
    crmf = der.tlv(0xA1, der.sequence(der.sequence()))  # TaggedRequest crm [1]
    nested = der.sequence(der.integer(2), der.sequence(der.oid(cmc.ID_DATA)))  # TaggedContentInfo
    for body, message in (
        (der.sequence(der.sequence(), der.sequence(crmf), der.sequence(), der.sequence()), "PKCS#10"),
        (der.sequence(der.sequence(), der.sequence(tcr), der.sequence(nested), der.sequence()), "nested"),
        (der.sequence(der.sequence(), der.sequence(tcr, tcr), der.sequence(), der.sequence()), "exactly one"),
    ):
        with pytest.raises(cmc.InvalidRequestToken) as exc:
            cmc.parse_request_token(signed(body, cert, key, content_type=cmc.ID_CCT_PKI_DATA, certificates=(),
                                           by_key_id=True))
        assert message in exc.value.detail

"""Crashes the fuzz targets found (python -m fuzz), each kept as the bytes that caused it,
with what is wrong in them, and checked both at the parser and through the target."""

from __future__ import annotations

import base64
import json

import pytest

from protocols.acme import jws, problems


def _b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


# acme-jws: an RSA JWK without its modulus "n" (josepy raised KeyError: 500 serverInternal
# on newAccount, unauthenticated). Expected: badPublicKey.
RSA_JWK_WITHOUT_N = json.dumps({
    "protected": _b64({"alg": "RS256", "jwk": {"kty": "RSA", "e": "AQAB"}, "nonce": "n",
                       "url": "https://127.0.0.1/acme/acme/new-account"}),
    "payload": _b64({}), "signature": "AAAA",
}).encode()


def test_rsa_jwk_without_modulus_is_bad_public_key() -> None:
    parsed = jws.parse(RSA_JWK_WITHOUT_N)
    assert parsed.jwk is not None
    with pytest.raises(problems.Problem) as caught:
        jws.load_jwk(parsed.jwk)
    assert caught.value.type == "badPublicKey" and caught.value.status == 400


def test_rsa_jwk_without_modulus_through_the_target() -> None:
    from fuzz.targets import acme_jws

    acme_jws.test_one_input(RSA_JWK_WITHOUT_N)


# csr / est-body: a challengePassword whose value is a REAL (tag 9), an INSTANCE OF (tag 8) or
# an ENUMERATED (tag 10) instead of a string. asn1crypto has no native form for those
# (AttributeError / TypeError: HTTP 500 on /simpleenroll before authentication; the csr target
# found REAL, est-body found ENUMERATED). Expected: BadCSR (HTTP 400).
def _csr_with_challenge_value(tag: int, value: bytes | None = None) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AttributeOID

    key = ec.generate_private_key(ec.SECP256R1())
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "device")]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"ZZZZ")
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    utf8_value = b"\x0c\x04ZZZZ"
    assert der.count(utf8_value) == 1
    replacement = value if value is not None else bytes([tag]) + b"\x04ZZZZ"
    assert len(replacement) == len(utf8_value)  # same length: the structure stays valid
    return der.replace(utf8_value, replacement)


@pytest.mark.parametrize("tag", [0x09, 0x08, 0x0A], ids=["REAL", "INSTANCE-OF", "ENUMERATED"])
def test_challenge_password_of_a_non_string_type_is_bad_csr(tag: int) -> None:
    from gateway.errors import BadCSR
    from protocols.est import csr as est_csr
    from protocols.est.wire import decode_body, encode_base64

    der = _csr_with_challenge_value(tag)
    request = est_csr.parse(decode_body(encode_base64(der)))
    with pytest.raises(BadCSR):
        est_csr.challenge_password(request)


# est-body (long run, 2026-12-02): a challengePassword that is a SEQUENCE holding an empty
# BIT STRING (no unused-bits octet): asn1crypto's .native raised IndexError (HTTP 500 on
# /simpleenroll before authentication). Expected: BadCSR (HTTP 400).
def test_challenge_password_holding_an_empty_bit_string_is_bad_csr() -> None:
    from gateway.errors import BadCSR
    from protocols.est import csr as est_csr
    from protocols.est.wire import decode_body, encode_base64

    der = _csr_with_challenge_value(0, b"\x30\x04\x03\x00\x05\x00")  # SEQUENCE { BIT STRING '', NULL }
    request = est_csr.parse(decode_body(encode_base64(der)))
    with pytest.raises(BadCSR):
        est_csr.challenge_password(request)


# scep-envelope: see vectors/README.md. Expected: MalformedMessage (HTTP 400), as for any
# envelope that is not a CMS structure.
VECTORS = __import__("pathlib").Path(__file__).parent / "vectors"


def test_envelope_with_an_object_descriptor_is_malformed() -> None:
    from gateway.edge.cms import MalformedCms, load_content_info
    from protocols.scep.envelope import open_envelope
    from protocols.scep.types import MalformedMessage

    data = (VECTORS / "scep-envelope-objectdescriptor-in-any.der").read_bytes()
    with pytest.raises(MalformedCms):
        load_content_info(data)
    with pytest.raises(MalformedMessage):
        open_envelope(data, [])


# scep-envelope (found by reading the same class of defect in the plaintext readers): a
# CertPoll IssuerAndSubject / GetCert IssuerAndSerialNumber whose name has an attribute of an
# unknown type with a REAL value (tag 9). AttributeError: HTTP 500 instead of FAILURE badRequest.
def _name_with_real_value() -> bytes:
    from gateway.edge import der

    return der.sequence(der.set_of([der.sequence(der.oid("1.2.3.4"), b"\x09\x01\x40")]))


def test_certpoll_and_getcert_names_with_a_real_value_are_bad_request() -> None:
    from gateway.edge import der
    from protocols.scep.message import load_issuer_and_serial, load_issuer_and_subject
    from protocols.scep.types import FailInfo, ScepFailure

    name = _name_with_real_value()
    for reader, content in ((load_issuer_and_subject, der.sequence(name, name)),
                            (load_issuer_and_serial, der.sequence(name, der.integer(5)))):
        with pytest.raises(ScepFailure) as caught:
            reader(content)
        assert caught.value.fail_info is FailInfo.BAD_REQUEST


def test_recipient_issuer_with_malformed_bidi_text_is_not_a_match() -> None:
    from asn1crypto import x509 as asn1_x509

    from fuzz.targets import scep_envelope
    from gateway.edge.cms import names_match
    from protocols.scep.envelope import open_envelope
    from protocols.scep.types import ScepFailure

    # Hebrew followed by Latin letters in one value: RFC 4518 refuses it as malformed bidi
    odd = asn1_x509.Name.build({"common_name": "\u05d0\u05d1abc"})
    plain = asn1_x509.Name.build({"common_name": "Gateway Dev Issuing CA"})
    assert names_match(odd, odd)  # identical encodings still match
    assert not names_match(odd, plain)
    data = (VECTORS / "scep-envelope-recipient-issuer-malformed-bidi.der").read_bytes()
    with pytest.raises(ScepFailure):  # badMessageCheck: not addressed to any RA key
        open_envelope(data, scep_envelope.recipients())


# ocsp (found by the fuzz smoke in .ci/run): a CertID whose hash algorithm OID has
# non-minimal sub-identifiers (0x80 padding) loaded, and building the response that echoes
# it raised ValueError (a 500). It is a malformed request.
def test_ocsp_certid_with_a_non_minimal_hash_oid_is_malformed() -> None:
    from gateway.errors import BadRequest
    from gateway.status.ocsp import parse_request

    data = (VECTORS / "ocsp-certid-hash-oid-non-minimal.der").read_bytes()
    with pytest.raises(BadRequest):
        parse_request(data)


# mde2-discover (long run, 2026-12-02): a mutated Discover whose tag lxml built from a
# namespace holding "}"; etree.QName refused it with ValueError (an unmapped 500).
# Expected: a declared fault (the target raises on anything else).
def test_mde2_discover_with_a_brace_in_the_namespace_is_a_fault() -> None:
    from fuzz.targets import load

    load("mde2-discover").test_one_input((VECTORS / "mde2-discover-brace-in-namespace.xml").read_bytes())

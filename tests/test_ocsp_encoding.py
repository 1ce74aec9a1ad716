"""OCSP requests made by the openssl CLI, answered by our encoder, checked by the openssl CLI.

Note on openssl's client: with ``-cert`` it builds a fresh request (and nonce) and
ignores ``-reqin``, so the nonce echo is checked with ``-reqin`` alone and the
per-certificate summary with ``-cert ... -no_nonce``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.ca.backend import RevocationReason
from gateway.errors import BadRequest, GatewayError
from gateway.keys import generate_private_key, private_key_pem, signature_hash_for
from gateway.status.ocsp import (
    CertId,
    ResponderIdentity,
    SingleStatus,
    build_ocsp_signing_certificate,
    build_response,
    error_response,
    matches_issuer,
    parse_request,
)

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
GOOD, REVOKED, UNKNOWN = 0xA1, 0xB2, 0xC3


def _builder(subject: x509.Name, issuer: x509.Name, public_key, serial: int, days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
    )


class ThrowawayCA:
    """A self-signed CA writing its certificates and keys as PEM files into one directory."""

    def __init__(self, algorithm: str, directory: Path, name: str = "Test CA") -> None:
        self.algorithm = algorithm
        self.dir = directory
        self.key = generate_private_key(algorithm)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(subject, subject, self.key.public_key(), x509.random_serial_number(), days=30)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), False)
            .sign(self.key, signature_hash_for(self.key))
        )
        self.pem = self.write("ca.pem", self.cert.public_bytes(Encoding.PEM))

    def write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def issue(self, serial: int, name: str) -> x509.Certificate:
        """A leaf certificate; writes ``<name>.pem`` and ``<name>.key``."""
        key = generate_private_key(self.algorithm)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = _builder(subject, self.cert.subject, key.public_key(), serial, days=10).sign(
            self.key, signature_hash_for(self.key)
        )
        self.write(f"{name}.pem", cert.public_bytes(Encoding.PEM))
        self.write(f"{name}.key", private_key_pem(key))
        return cert

    def delegated_responder(self) -> ResponderIdentity:
        key = generate_private_key(self.algorithm)
        cert = build_ocsp_signing_certificate(
            issuer_cert=self.cert, issuer_key=self.key, responder_key=key, serial=0x0C5B,
            not_before=NOW - dt.timedelta(hours=1), not_after=NOW + dt.timedelta(days=7),
        )
        self.write("responder.pem", cert.public_bytes(Encoding.PEM))
        return ResponderIdentity(cert, key, (cert,))


@pytest.fixture(params=["RSA-2048", "EC-P384"])
def ca(request: pytest.FixtureRequest, tmp_path: Path) -> ThrowawayCA:
    authority = ThrowawayCA(request.param, tmp_path)
    for serial, name in [(GOOD, "a"), (REVOKED, "b"), (UNKNOWN, "c")]:
        authority.issue(serial, name)
    return authority


def openssl(ca: ThrowawayCA, *args: str) -> str:
    """Run openssl in the CA's directory; returns stdout+stderr, with the exit code appended."""
    out = subprocess.run(
        ["openssl", *args], cwd=ca.dir, capture_output=True, text=True, timeout=60, check=False
    )
    return f"{out.stdout}{out.stderr}\nexit={out.returncode}"


def make_request(ca: ThrowawayCA, *options: str, certs: tuple[str, ...] = ("a", "b", "c")) -> bytes:
    """``options`` go before the first -cert (openssl wants the digest there)."""
    cert_args = [arg for name in certs for arg in ("-cert", f"{name}.pem")]
    out = openssl(ca, "ocsp", *options, "-issuer", "ca.pem", *cert_args, "-reqout", "req.der")
    assert out.endswith("exit=0"), out
    return (ca.dir / "req.der").read_bytes()


def statuses_for(cert_ids: tuple[CertId, ...]) -> list[SingleStatus]:
    """good for a, revoked (keyCompromise) for b, unknown for everything else."""
    result = []
    for cid in cert_ids:
        if cid.serial == GOOD:
            result.append(SingleStatus(cid, "good", None, None, NOW, NOW + dt.timedelta(hours=4)))
        elif cid.serial == REVOKED:
            result.append(SingleStatus(cid, "revoked", NOW - dt.timedelta(hours=2),
                                       RevocationReason.key_compromise, NOW, NOW + dt.timedelta(hours=4)))
        else:
            result.append(SingleStatus(cid, "unknown", None, None, NOW, None))
    return result


@pytest.mark.parametrize("digest", ["-sha1", "-sha256"])
@pytest.mark.parametrize("with_nonce", [True, False], ids=["nonce", "no_nonce"])
@pytest.mark.parametrize("delegated", [False, True], ids=["ca_signs", "delegated"])
def test_openssl_accepts_multi_certificate_response(
    ca: ThrowawayCA, digest: str, with_nonce: bool, delegated: bool
) -> None:
    req_der = make_request(ca, digest, *([] if with_nonce else ["-no_nonce"]))
    parsed = parse_request(req_der)
    assert [c.serial for c in parsed.cert_ids] == [GOOD, REVOKED, UNKNOWN]
    assert {c.hash_algorithm for c in parsed.cert_ids} == {digest[1:]}
    assert all(matches_issuer(c, ca.cert) for c in parsed.cert_ids)
    assert (parsed.nonce is not None) is with_nonce
    assert parsed.signed is False and parsed.signature_valid is None

    responder = ca.delegated_responder() if delegated else ResponderIdentity(ca.cert, ca.key, ())
    resp = build_response(responder=responder, statuses=statuses_for(parsed.cert_ids),
                          nonce=parsed.nonce, produced_at=NOW)
    ca.write("resp.der", resp)

    # Signature, responder authorisation and nonce echo against the request as sent.
    out = openssl(ca, "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-issuer", "ca.pem",
                  "-CAfile", "ca.pem")
    assert "Response verify OK" in out and out.endswith("exit=0"), out
    assert "WARNING: no nonce in response" not in out
    assert "Nonce Verify error" not in out

    # Per-certificate answers, matched by openssl against its own CertIDs.
    out = openssl(ca, "ocsp", "-respin", "resp.der", "-CAfile", "ca.pem", digest, "-issuer", "ca.pem",
                  "-cert", "a.pem", "-cert", "b.pem", "-cert", "c.pem", "-no_nonce")
    assert out.endswith("exit=0"), out
    assert "a.pem: good" in out
    assert "b.pem: revoked" in out
    assert "Reason: keyCompromise" in out
    assert "c.pem: unknown" in out
    assert "Response verify OK" in out


def test_nonce_is_echoed_byte_exact_and_openssl_notices_a_missing_one(ca: ThrowawayCA) -> None:
    parsed = parse_request(make_request(ca))
    assert parsed.nonce is not None
    resp = asn1_ocsp.OCSPResponse.load(
        build_response(responder=ResponderIdentity(ca.cert, ca.key, ()),
                       statuses=statuses_for(parsed.cert_ids), nonce=parsed.nonce, produced_at=NOW)
    )
    (ext,) = resp["response_bytes"]["response"].parsed["tbs_response_data"]["response_extensions"]
    assert ext["extn_id"].native == "nonce"
    assert ext["extn_value"].contents == parsed.nonce

    # The check above is only meaningful if openssl would complain about a missing echo.
    ca.write("resp.der", build_response(responder=ResponderIdentity(ca.cert, ca.key, ()),
                                        statuses=statuses_for(parsed.cert_ids), nonce=None,
                                        produced_at=NOW))
    out = openssl(ca, "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-issuer", "ca.pem",
                  "-CAfile", "ca.pem")
    assert "WARNING: no nonce in response" in out


def test_response_fields_as_cryptography_reads_them(ca: ThrowawayCA) -> None:
    parsed = parse_request(make_request(ca, "-sha256"))
    statuses = statuses_for(parsed.cert_ids)
    resp = x509_ocsp.load_der_ocsp_response(
        build_response(responder=ResponderIdentity(ca.cert, ca.key, ()), statuses=statuses,
                       nonce=parsed.nonce, produced_at=NOW)
    )
    assert resp.response_status == x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.responder_name is None
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key()).digest
    assert resp.signature_hash_algorithm.name == signature_hash_for(ca.key).name
    assert resp.produced_at_utc == NOW
    singles = list(resp.responses)
    assert [s.serial_number for s in singles] == [GOOD, REVOKED, UNKNOWN]
    assert [s.certificate_status for s in singles] == [
        x509_ocsp.OCSPCertStatus.GOOD, x509_ocsp.OCSPCertStatus.REVOKED, x509_ocsp.OCSPCertStatus.UNKNOWN,
    ]
    assert singles[1].revocation_reason == x509.ReasonFlags.key_compromise
    assert singles[1].revocation_time_utc == NOW - dt.timedelta(hours=2)
    assert singles[2].next_update_utc is None


def test_unspecified_reason_is_omitted(ca: ThrowawayCA) -> None:
    parsed = parse_request(make_request(ca, certs=("b",)))
    status = SingleStatus(parsed.cert_ids[0], "revoked", NOW, RevocationReason.unspecified, NOW, None)
    resp = x509_ocsp.load_der_ocsp_response(
        build_response(responder=ResponderIdentity(ca.cert, ca.key, ()), statuses=[status],
                       nonce=None, produced_at=NOW)
    )
    assert resp.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason is None


@pytest.mark.parametrize("digest", ["-sha1", "-sha256", "-sha384", "-sha512"])
def test_matches_issuer(ca: ThrowawayCA, tmp_path: Path, digest: str) -> None:
    (cid,) = parse_request(make_request(ca, digest, certs=("a",))).cert_ids
    assert matches_issuer(cid, ca.cert)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    same_name_other_key = ThrowawayCA(ca.algorithm, other_dir)
    assert not matches_issuer(cid, same_name_other_key.cert)
    assert not matches_issuer(
        CertId(cid.issuer_name_hash, cid.issuer_key_hash, "md5", cid.serial), ca.cert
    )


def test_signed_request_verifies_and_tampering_is_detected(ca: ThrowawayCA) -> None:
    signer = ca.issue(0x5151, "signer")
    req_der = make_request(ca, "-signer", "signer.pem", "-signkey", "signer.key")
    parsed = parse_request(req_der)
    assert parsed.signed is True
    assert parsed.signature_valid is True
    assert parsed.requestor_certs == (signer,)
    assert [c.serial for c in parsed.cert_ids] == [GOOD, REVOKED, UNKNOWN]

    assert parsed.nonce is not None and req_der.count(parsed.nonce) == 1
    at = req_der.index(parsed.nonce) + len(parsed.nonce) - 1
    tampered = req_der[:at] + bytes([req_der[at] ^ 0x01]) + req_der[at + 1:]
    again = parse_request(tampered)
    assert again.signed is True
    assert again.signature_valid is False
    assert again.nonce != parsed.nonce


def test_signed_request_without_certificate_cannot_be_verified(ca: ThrowawayCA) -> None:
    ca.issue(0x5151, "signer")
    parsed = parse_request(make_request(ca, "-signer", "signer.pem", "-signkey", "signer.key",
                                        "-no_certs"))
    assert parsed.signed is True
    assert parsed.requestor_certs == ()
    assert parsed.signature_valid is False


def test_garbage_requests_are_bad_requests(ca: ThrowawayCA) -> None:
    good = make_request(ca)
    for garbage in (b"", b"\x00", b"garbage", good[:-3], good + b"\x00", os.urandom(64),
                    ca.cert.public_bytes(Encoding.DER)):
        with pytest.raises(BadRequest):
            parse_request(garbage)


def test_error_responses(ca: ThrowawayCA) -> None:
    expected = {
        "malformed_request": (x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST, "malformedRequest (1)"),
        "internal_error": (x509_ocsp.OCSPResponseStatus.INTERNAL_ERROR, "internalError (2)"),
        "try_later": (x509_ocsp.OCSPResponseStatus.TRY_LATER, "tryLater (3)"),
        "sig_required": (x509_ocsp.OCSPResponseStatus.SIG_REQUIRED, "sigRequired (5)"),
        "unauthorized": (x509_ocsp.OCSPResponseStatus.UNAUTHORIZED, "unauthorized (6)"),
    }
    for status, (enum_value, openssl_text) in expected.items():
        der = error_response(status)
        assert x509_ocsp.load_der_ocsp_response(der).response_status == enum_value
        ca.write("err.der", der)
        out = openssl(ca, "ocsp", "-respin", "err.der", "-resp_text", "-noverify")
        assert f"Responder Error: {openssl_text}".lower() in out.lower(), out
    with pytest.raises(GatewayError):
        error_response("successful")


def test_openssl_refuses_a_responder_without_ocsp_signing(ca: ThrowawayCA) -> None:
    """Guards the delegated-responder test: openssl does check the responder's authority."""
    leaf = ca.issue(0x7777, "notaresponder")
    key = serialization.load_pem_private_key((ca.dir / "notaresponder.key").read_bytes(), None)
    parsed = parse_request(make_request(ca))
    ca.write("resp.der", build_response(responder=ResponderIdentity(leaf, key, (leaf,)),
                                        statuses=statuses_for(parsed.cert_ids), nonce=parsed.nonce,
                                        produced_at=NOW))
    out = openssl(ca, "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "ca.pem")
    assert "Response Verify Failure" in out


def test_delegated_responder_certificate(ca: ThrowawayCA) -> None:
    responder = ca.delegated_responder()
    cert = responder.certificate
    ext = cert.extensions
    assert cert.subject.rfc4514_string() == "CN=Test CA OCSP Responder"
    assert cert.issuer == ca.cert.subject
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    nocheck = ext.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.5.5.7.48.1.5"))
    assert isinstance(nocheck.value, x509.OCSPNoCheck)
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    spki_bits = x509.SubjectKeyIdentifier.from_public_key(responder.private_key.public_key())
    assert spki_bits.digest == hashlib.sha1(_bit_string(cert)).digest()  # helper sanity
    assert ext.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == (
        hashlib.sha256(_bit_string(cert)).digest()[:20]
    )
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    cert.verify_directly_issued_by(ca.cert)

    text = openssl(ca, "x509", "-in", "responder.pem", "-noout", "-text")
    assert "OCSP No Check" in text and "OCSP Signing" in text
    purpose = openssl(ca, "verify", "-purpose", "ocsphelper", "-CAfile", "ca.pem", "responder.pem")
    assert "responder.pem: OK" in purpose, purpose


def _bit_string(cert: x509.Certificate) -> bytes:
    """subjectPublicKey BIT STRING contents, read independently of the module under test."""
    tbs = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))["tbs_certificate"]
    return tbs["subject_public_key_info"]["public_key"].contents[1:]


def test_unknown_critical_request_extension_is_refused(ca: ThrowawayCA) -> None:
    request = asn1_ocsp.OCSPRequest.load(make_request(ca, "-no_nonce", certs=("a",)))
    tbs = request["tbs_request"]
    crafted = asn1_ocsp.OCSPRequest({"tbs_request": {
        "request_list": tbs["request_list"],
        "request_extensions": [{"extn_id": "1.3.6.1.4.1.99999.1", "critical": True, "extn_value": b"\x05\x00"}],
    }})
    with pytest.raises(BadRequest):
        parse_request(crafted.dump())
    crafted["tbs_request"]["request_extensions"][0]["critical"] = False
    assert parse_request(crafted.dump(force=True)).cert_ids[0].serial == GOOD

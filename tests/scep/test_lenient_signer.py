"""Old clients' self-signed signer certificates that ``cryptography`` refuses (a version
field of 3 or -1) are read leniently: the request's signature is checked with the key
they carry and the PKCSReq is answered with a signed CertRep (RFC 8894), not HTTP 400.

The vectors are made here: a genuine self-signed certificate re-encoded with the bad
version field and signed again with the device key, as those clients produce them.
"""

from __future__ import annotations

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conformance.scep.simulator import make_csr, self_signed
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import STATIC, Env


def with_version(cert: x509.Certificate, key: rsa.RSAPrivateKey, version: int) -> bytes:
    """``cert`` with its TBSCertificate's version field set to ``version`` (0 is v1, 2 is
    v3: 3 is the "v4" and -1 the negative integer old clients write), self-signed again."""
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    tbs = asn1_x509.TbsCertificate.load(parsed["tbs_certificate"].dump())
    tbs["version"] = version
    signature = key.sign(tbs.dump(force=True), padding.PKCS1v15(), hashes.SHA256())
    return bytes(asn1_x509.Certificate({
        "tbs_certificate": tbs, "signature_algorithm": parsed["signature_algorithm"],
        "signature_value": signature,
    }).dump())


def carrying(message: bytes, certificate_der: bytes) -> bytes:
    """The pkiMessage with its one embedded certificate replaced (same issuer and serial,
    so the SignerInfo still names it)."""
    info = cms.ContentInfo.load(message)
    signed = info["content"]
    signed["certificates"] = cms.CertificateSet([
        cms.CertificateChoices({"certificate": asn1_x509.Certificate.load(certificate_der)})])
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump(force=True))


@pytest.mark.parametrize("version", [3, -1])
async def test_a_signer_certificate_with_an_invalid_version_enrolls(env: Env, version: int) -> None:
    device = await env.device(cn="old-client")
    odd = with_version(device.signer, device.key, version)
    with pytest.raises((ValueError, x509.InvalidVersion)):
        x509.load_der_x509_certificate(odd)  # what made it HTTP 400 before
    body, tid, nonce = device.pkcs_req(make_csr(device.key, "old-client", challenge=STATIC))
    rep = await env.post(carrying(body, odd))
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    assert (rep.transaction_id, rep.recipient_nonce) == (tid, nonce)
    issued = device.issued(rep)  # openssl opens the envelope addressed to the signer's issuer and serial
    assert issued[0].subject.rfc4514_string() == "CN=old-client"
    assert issued[0].public_key().public_numbers() == device.key.public_key().public_numbers()


async def test_a_lenient_signer_still_has_to_have_signed_the_request(env: Env) -> None:
    """The key read leniently is the key the signature is checked with."""
    device = await env.device(cn="old-client")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    impostor = self_signed(other, "old-client")
    # same issuer and serial as the device's certificate, another key
    forged = x509.CertificateBuilder().subject_name(impostor.subject).issuer_name(device.signer.issuer) \
        .public_key(other.public_key()).serial_number(device.signer.serial_number) \
        .not_valid_before(impostor.not_valid_before_utc).not_valid_after(impostor.not_valid_after_utc) \
        .sign(other, hashes.SHA256())
    body, _tid, _ = device.pkcs_req(make_csr(device.key, "old-client", challenge=STATIC))
    rep = await env.post(carrying(body, with_version(forged, other, 3)))
    assert rep.status is PkiStatus.FAILURE and rep.fail_info is FailInfo.BAD_MESSAGE_CHECK
    assert await env.certificate_count() == 0

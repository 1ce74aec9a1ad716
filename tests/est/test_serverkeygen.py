"""serverkeygen (RFC 7030 4.4): the key made here, returned plain or enveloped to the client's key."""

from __future__ import annotations

import base64
import email
import email.policy
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway import keys
from gateway.edge import der
from protocols.est import wire
from tests.support import openssl

from .helpers import EstServer, b64, csr_with_attributes, make_csr

ASYMM_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54"
DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"
SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"


def parts(reply) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Body parts of a multipart/mixed reply by Content-Type (payload base64-decoded)."""
    assert reply.status == 200, reply.text
    content_type = reply.headers["Content-Type"]
    assert content_type.startswith("multipart/mixed; boundary=")
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + reply.body,
                                       policy=email.policy.HTTP)
    out = {}
    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "base64"
        raw = part.get_payload(decode=False)
        assert all(len(line) <= 76 for line in raw.splitlines())
        out[part["Content-Type"].replace('"', "")] = base64.b64decode(raw)
    return out


def spki(key) -> bytes:  # type: ignore[no-untyped-def]
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("csr_key,expected", [("EC-P384", "EC-P384"), ("EC-P256", "EC-P256"), ("RSA-2048", "RSA-2048")])
async def test_serverkeygen_returns_a_pkcs8_key_and_its_certificate(est: EstServer, csr_key: str, expected: str) -> None:
    csr, throwaway = make_csr("kg-device", ["kg.devices.example"], keys.generate_private_key(csr_key))
    got = parts(await est.post("serverkeygen", b64(csr), auth=await est.dev_auth()))
    assert set(got) == {"application/pkcs8", "application/pkcs7-mime; smime-type=certs-only"}
    key = serialization.load_der_private_key(got["application/pkcs8"], password=None)
    [cert] = wire_certs(got["application/pkcs7-mime; smime-type=certs-only"])
    assert spki(key) == cert.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki(key) != spki(throwaway)  # the CSR's key is only a template
    assert keys.describe_public_key(cert.public_key()).name == expected
    assert cert.subject.rfc4514_string() == "CN=kg-device"
    [event] = await est.events(type="keygen", protocol_config="est")
    assert event.status == "success"


def wire_certs(der: bytes) -> list[x509.Certificate]:
    from cryptography.hazmat.primitives.serialization import pkcs7

    return pkcs7.load_der_pkcs7_certificates(der)


async def test_serverkeygen_ignores_the_csr_signature(est: EstServer) -> None:
    csr, _ = make_csr("kg-unsigned")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1
    reply = await est.post("serverkeygen", base64.b64encode(bytes(der)), auth=await est.dev_auth())
    assert "application/pkcs8" in parts(reply)


async def test_small_rsa_template_key_gets_the_smallest_allowed_size(est: EstServer) -> None:
    csr, _ = make_csr("kg-rsa", key=rsa.generate_private_key(65537, 1024))
    got = parts(await est.post("serverkeygen", b64(csr), auth=await est.dev_auth()))
    [cert] = wire_certs(got["application/pkcs7-mime; smime-type=certs-only"])
    assert keys.describe_public_key(cert.public_key()).name == "RSA-2048"


async def test_serverkeygen_refusals(est: EstServer) -> None:
    csr, _ = make_csr("kg-refused")
    assert (await est.post("serverkeygen", b64(csr))).status == 401
    await est.label("nokeygen", users={"user": "p"}, serverkeygen=False)
    assert (await est.post("serverkeygen", b64(csr), label="nokeygen", auth=("user", "p"))).status == 501
    await est.label("held", users={"user": "p"}, approval="manual")
    reply = await est.post("serverkeygen", b64(csr), label="held", auth=("user", "p"))
    assert reply.status == 403 and "approval" in reply.text
    for label in ("est", "nokeygen", "held"):
        assert await est.issued(label) == 0


def _capabilities(*oids: str) -> bytes:
    return der.sequence(*(der.sequence(der.oid(o)) for o in oids))


async def _encrypted(est: EstServer, client_key, tmp_path: Path, *, capabilities: list[str] | None = None):  # type: ignore[no-untyped-def]
    cred = await est.client_cert("kg-holder", key=client_key)
    ski = cred.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    attributes = [(ASYMM_DECRYPT_KEY_ID, [der.octet_string(ski)])]
    if capabilities is not None:
        attributes.append((SMIME_CAPABILITIES, [_capabilities(*capabilities)]))
    csr, _ = csr_with_attributes("kg-secret", attributes)
    reply = await est.post("serverkeygen", b64(csr), cert=cred)
    got = parts(reply)
    assert set(got) == {wire.SERVER_GENERATED_KEY, wire.CERTS_ONLY}
    (tmp_path / "enveloped.der").write_bytes(got[wire.SERVER_GENERATED_KEY])
    return cred, got


@pytest.mark.parametrize("algorithm", ["EC-P256", "RSA-2048"])
async def test_key_encrypted_to_the_clients_certificate_opens_with_openssl(est: EstServer, tmp_path: Path,
                                                                           algorithm: str) -> None:
    cred, got = await _encrypted(est, keys.generate_private_key(algorithm), tmp_path)
    openssl("cms", "-decrypt", "-inform", "DER", "-in", str(tmp_path / "enveloped.der"), "-binary",
            "-recip", str(cred.cert_path), "-inkey", str(cred.key_path), "-out", str(tmp_path / "signed.der"))
    # Signed by the EST server (the HTTPS listener's certificate), which chains to the gateway root.
    openssl("cms", "-verify", "-inform", "DER", "-in", str(tmp_path / "signed.der"), "-binary",
            "-CAfile", est.info.tls_ca, "-purpose", "any", "-out", str(tmp_path / "package.der"))
    signed = acms.ContentInfo.load((tmp_path / "signed.der").read_bytes())
    assert signed["content"]["encap_content_info"]["content_type"].dotted == "2.16.840.1.101.2.1.2.78.5"
    package = (tmp_path / "package.der").read_bytes()
    assert package[0] == 0x30
    key = serialization.load_der_private_key(_first_element(package), password=None)
    [cert] = wire_certs(got[wire.CERTS_ONLY])
    assert spki(key) == cert.public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def _first_element(sequence_der: bytes) -> bytes:
    from asn1crypto import core

    class _Seq(core.SequenceOf):
        _child_spec = core.Any

    return _Seq.load(sequence_der)[0].dump()


async def test_content_cipher_follows_smime_capabilities(est: EstServer, tmp_path: Path) -> None:
    _, got = await _encrypted(est, ec.generate_private_key(ec.SECP256R1()), tmp_path,
                              capabilities=["2.16.840.1.101.3.4.1.2"])  # aes128-CBC only
    enveloped = acms.ContentInfo.load(got[wire.SERVER_GENERATED_KEY])["content"]
    assert enveloped["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native == "aes128_cbc"
    des_only, _ = csr_with_attributes("kg-x", [
        (ASYMM_DECRYPT_KEY_ID, [der.octet_string(b"\x01" * 20)]),
        (SMIME_CAPABILITIES, [_capabilities("1.2.840.113549.3.7")]),  # des-ede3-cbc
    ])
    reply = await est.post("serverkeygen", b64(des_only), auth=await est.dev_auth())
    assert reply.status == 400 and "SMIMECapabilities" in reply.text


async def test_unknown_key_identifier_and_symmetric_keys_are_refused(est: EstServer) -> None:
    cred = await est.client_cert("kg-other")
    csr, _ = csr_with_attributes("kg-y", [(ASYMM_DECRYPT_KEY_ID, [der.octet_string(b"\x02" * 20)])])
    reply = await est.post("serverkeygen", b64(csr), cert=cred)
    assert reply.status == 400 and "key identifier" in reply.text
    csr, _ = csr_with_attributes("kg-z", [(DECRYPT_KEY_ID, [der.octet_string(b"\x03" * 16)])])
    reply = await est.post("serverkeygen", b64(csr), cert=cred)
    assert reply.status == 501 and "DecryptKeyIdentifier" in reply.text
    assert await est.issued() == 0

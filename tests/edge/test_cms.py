"""gateway.edge.cms round trips: sign/verify per key and digest, envelope/decrypt per
cipher and key-management kind, certs-only with CRLs; OpenSSL checks both directions
where it reads the algorithm (it is an independent CMS implementation)."""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from pathlib import Path

import pytest
from asn1crypto import cms as acms
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from gateway.edge import cms, der

NOW = dt.datetime(2024, 6, 11, 12, 0, 0, tzinfo=dt.timezone.utc)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
CA = tuple[x509.Certificate, rsa.RSAPrivateKey]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn: str, key: PrivateKey, issuer: tuple[x509.Certificate, PrivateKey] | None = None,
              serial: int = 1000) -> x509.Certificate:
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def ca() -> CA:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return make_cert("Edge Test CA", key, serial=1), key


def _key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}[kind])


@pytest.fixture(scope="module")
def identities(ca: CA) -> dict[str, cms.Recipient]:
    out = {}
    for serial, kind in enumerate(("rsa", "p256", "p384"), start=10):
        key = _key(kind)
        out[kind] = cms.Recipient(make_cert(f"holder-{kind}", key, ca, serial=serial), key)
    return out


def run_openssl(*args: str, stdin: bytes) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def pem_files(tmp: Path, who: cms.Recipient) -> tuple[str, str]:
    (tmp / "c.pem").write_bytes(who.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp / "k.pem").write_bytes(who.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(tmp / "c.pem"), str(tmp / "k.pem")


LEGACY = ("-provider", "legacy", "-provider", "default")  # OpenSSL 3 keeps DES there

# --- SignedData -------------------------------------------------------------------------

SCEP_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
SCEP_SENDER_NONCE = "2.16.840.1.113733.1.9.5"


@pytest.mark.parametrize("kind", ["rsa", "p256", "p384"])
@pytest.mark.parametrize("digest", ["sha1", "sha224", "sha256", "sha384", "sha512"])
def test_sign_then_verify_with_custom_attributes(identities: dict[str, cms.Recipient], ca: CA, kind: str,
                                                 digest: str) -> None:
    who = identities[kind]
    content = b"payload " * 50
    signed = cms.sign(
        content, cms.Signer(who.certificate, who.key), digest_name=digest, signing_time=NOW,
        attributes=[cms.attribute(SCEP_TRANSACTION_ID, core.PrintableString("tid-1")),
                    cms.attribute(SCEP_SENDER_NONCE, core.OctetString(b"n" * 16))],
        certificates=[who.certificate, ca[0], who.certificate],
    )
    info = cms.load_content_info(signed)
    sd = info["content"]
    assert sd["version"].native == "v1" and sd["encap_content_info"]["content"].native == content
    certs = cms.embedded_certificates(sd)
    assert sorted(c.serial_number for c in certs) == sorted([who.certificate.serial_number, 1])  # duplicate dropped
    [si] = sd["signer_infos"]
    signer = next(c for c in certs if cms.matches_identifier(c, si["sid"]))
    assert signer == who.certificate
    cms.verify_signer_info(si, signer, content)
    assert [v.native for v in cms.attribute_values(si, SCEP_TRANSACTION_ID)] == ["tid-1"]
    assert cms.attribute_values(si, "1.2.840.113549.1.9.5")[0].native == NOW
    with pytest.raises(cms.VerificationFailed, match="messageDigest does not match"):
        cms.verify_signer_info(si, signer, content + b"!")
    other = identities["rsa" if kind != "rsa" else "p256"].certificate
    with pytest.raises((cms.VerificationFailed, cms.UnsupportedAlgorithm)):
        cms.verify_signer_info(si, other, content)
    tampered = bytearray(si["signature"].native)
    tampered[len(tampered) // 2] ^= 0x01
    si["signature"] = bytes(tampered)
    with pytest.raises(cms.VerificationFailed, match="does not verify"):
        cms.verify_signer_info(si, signer, content)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_openssl_verifies_our_signatures(identities: dict[str, cms.Recipient], ca: CA, tmp_path: Path,
                                         kind: str) -> None:
    who = identities[kind]
    signed = cms.sign(b"hello", cms.Signer(who.certificate, who.key), digest_name="sha256", signing_time=NOW,
                      certificates=[who.certificate], content_type="1.2.840.113549.1.9.16.1.4")
    assert cms.load_content_info(signed)["content"]["version"].native == "v3"  # eContentType is not id-data
    (tmp_path / "ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    out = run_openssl("cms", "-verify", "-inform", "DER", "-binary", "-CAfile", str(tmp_path / "ca.pem"),
                      "-purpose", "any", "-attime", str(int(NOW.timestamp())), stdin=signed)
    assert out == b"hello"


def test_we_verify_openssl_signatures(identities: dict[str, cms.Recipient], tmp_path: Path) -> None:
    who = identities["p384"]
    cert, key = pem_files(tmp_path, who)
    signed = run_openssl("cms", "-sign", "-binary", "-outform", "DER", "-nodetach", "-md", "sha384",
                         "-signer", cert, "-inkey", key, stdin=b"from openssl")
    sd = cms.load_content_info(signed)["content"]
    [si] = sd["signer_infos"]
    cms.verify_signer_info(si, who.certificate, sd["encap_content_info"]["content"].native)


def test_unsupported_digests_and_malformed_input() -> None:
    with pytest.raises(cms.UnsupportedAlgorithm, match="md5"):
        cms.hash_for("md5")
    with pytest.raises(cms.MalformedCms, match="pkiMessage is not a CMS ContentInfo"):
        cms.load_content_info(b"\x30\x03\x02\x01\x01", "pkiMessage")
    with pytest.raises(cms.MalformedCms):
        cms.load_content_info(der.sequence(der.oid("1.2.840.113549.1.7.2")) + b"x")


# --- certs-only -------------------------------------------------------------------------


def test_certificates_only_with_and_without_crls(identities: dict[str, cms.Recipient], ca: CA) -> None:
    certs = [identities["rsa"].certificate, ca[0], identities["p256"].certificate, ca[0]]
    via_pyca = cms.certificates_only(certs)
    assert via_pyca == cms._certificates_only_asn1(cms._unique(certs), [])  # same bytes both ways
    assert set(pkcs7.load_der_pkcs7_certificates(via_pyca)) == set(certs)
    assert cms.certificates_of_degenerate(via_pyca) == pkcs7.load_der_pkcs7_certificates(via_pyca)
    crl = (
        x509.CertificateRevocationListBuilder().issuer_name(ca[0].subject)
        .last_update(NOW).next_update(NOW + dt.timedelta(days=1)).sign(ca[1], hashes.SHA256())
    )
    crl_der = crl.public_bytes(serialization.Encoding.DER)
    with_crl = cms.certificates_only([ca[0]], [crl_der])
    sd = acms.ContentInfo.load(with_crl)["content"]
    assert [c.dump() for c in sd["crls"]] == [crl_der] and len(sd["certificates"]) == 1
    assert len(sd["signer_infos"]) == 0 and sd["encap_content_info"]["content"].native is None
    crl_only = acms.ContentInfo.load(cms.certificates_only([], [crl_der]))["content"]  # SCEP GetCRL
    assert crl_only["crls"][0].dump() == crl_der and not crl_only["certificates"].native


def test_names_compare_the_rfc5280_way(ca: CA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    upper = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EDGE TEST CA")])
    odd = (
        x509.CertificateBuilder().subject_name(_name("leaf")).issuer_name(upper).public_key(key.public_key())
        .serial_number(5).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)).sign(ca[1], hashes.SHA256())
    )
    assert cms.issued_by(odd, ca[0])  # case-insensitive per RFC 5280 section 7.1
    assert cms.self_issued(ca[0]) and not cms.self_issued(odd)


# --- EnvelopedData ----------------------------------------------------------------------

TRANSPORTS = [
    cms.transport_algorithm("rsaes_pkcs1v15"),
    cms.transport_algorithm("rsaes_oaep", "sha1"),
    cms.transport_algorithm("rsaes_oaep", "sha256"),
    cms.transport_algorithm("rsaes_oaep", "sha512"),
]


@pytest.mark.parametrize("cipher", list(cms.CIPHER_NAMES))
@pytest.mark.parametrize("transport", range(len(TRANSPORTS)))
def test_key_transport_round_trip(identities: dict[str, cms.Recipient], cipher: str, transport: int) -> None:
    who = identities["rsa"]
    alg = TRANSPORTS[transport]
    plaintext = b"secret " * 37
    sealed = cms.encrypt(plaintext, [cms.EnvelopeRecipient.of(who.certificate, key_transport=alg)], cipher)
    kind = acms.ContentInfo.load(sealed)["content_type"].native
    assert kind == ("authenticated_enveloped_data" if cipher in cms.GCM_CIPHERS else "enveloped_data")
    opened = cms.decrypt(sealed, [identities["p256"], who])
    assert opened.plaintext == plaintext and opened.recipient == who
    assert opened.algorithms.content == cipher and opened.algorithms.key_transport.dump() == alg.dump()
    assert opened.algorithms.content_name == cms.CIPHER_NAMES[cipher]


@pytest.mark.parametrize("kind", ["p256", "p384"])
@pytest.mark.parametrize("cipher", ["aes128_cbc", "aes192_cbc", "aes256_cbc", "aes128_gcm", "aes256_gcm"])
@pytest.mark.parametrize("by_key_id", [False, True])
def test_key_agreement_round_trip(identities: dict[str, cms.Recipient], kind: str, cipher: str,
                                  by_key_id: bool) -> None:
    holder = identities[kind]
    key_id = b"\x07" * 20 if by_key_id else None
    who = cms.Recipient(holder.certificate, holder.key, key_identifier=key_id)
    sealed = cms.encrypt(b"ec secret", [cms.EnvelopeRecipient.of(who.certificate, key_identifier=key_id)], cipher,
                         content_type="signed_data")
    env = acms.ContentInfo.load(sealed)["content"]
    if cipher not in cms.GCM_CIPHERS:
        assert env["version"].native == "v2"
    opened = cms.decrypt(sealed, [identities["rsa"], who])
    assert (opened.plaintext, opened.content_type, opened.recipient) == (b"ec secret", "signed_data", who)
    assert opened.algorithms.key_transport["algorithm"].dotted == cms.ECDH_SHA256_KDF


def test_envelope_versions_and_identifiers(identities: dict[str, cms.Recipient]) -> None:
    cert = identities["rsa"].certificate
    by_serial = acms.ContentInfo.load(cms.encrypt(b"x", [cms.EnvelopeRecipient.of(cert)], "aes128_cbc"))["content"]
    assert by_serial["version"].native == "v0"
    [info] = by_serial["recipient_infos"]
    assert info.chosen["version"].native == "v0" and info.chosen["rid"].name == "issuer_and_serial_number"
    assert info.chosen["key_encryption_algorithm"]["algorithm"].native == "rsaes_oaep"  # default transport
    by_ski = acms.ContentInfo.load(
        cms.encrypt(b"x", [cms.EnvelopeRecipient.of(cert, key_identifier=b"k" * 20)], "aes128_cbc"))["content"]
    assert by_ski["version"].native == "v2"
    assert by_ski["recipient_infos"][0].chosen["rid"].chosen.native == b"k" * 20


@pytest.mark.parametrize(("cipher", "kind"), [  # key agreement is AES-only (AES key wrap)
    (cipher, kind) for cipher in ("des", "tripledes_3key", "aes128_cbc", "aes256_cbc", "aes256_gcm")
    for kind in ("rsa", "p256") if kind == "rsa" or cipher.startswith("aes")
])
def test_openssl_opens_our_envelopes(identities: dict[str, cms.Recipient], tmp_path: Path, cipher: str,
                                     kind: str) -> None:
    who = identities[kind]
    transport = cms.transport_algorithm("rsaes_oaep", "sha256") if kind == "rsa" else None
    sealed = cms.encrypt(b"for openssl", [cms.EnvelopeRecipient.of(who.certificate, key_transport=transport)],
                         cipher)
    cert, key = pem_files(tmp_path, who)
    assert run_openssl("cms", "-decrypt", "-binary", *LEGACY, "-inform", "DER", "-recip", cert, "-inkey", key,
                       stdin=sealed) == b"for openssl"


_OPENSSL_CIPHERS = [("-des", "des"), ("-des3", "tripledes_3key"), ("-aes-192-cbc", "aes192_cbc"),
                    ("-aes-128-gcm", "aes128_gcm")]
_OPENSSL_KEYOPTS = [(), ("-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha384"),
                    ("ec",), ("ec", "-keyopt", "ecdh_kdf_md:sha256")]


@pytest.mark.parametrize(("flag", "cipher", "keyopts"), [  # OpenSSL cannot AES-wrap DES keys for EC recipients
    (flag, cipher, keyopts) for flag, cipher in _OPENSSL_CIPHERS for keyopts in _OPENSSL_KEYOPTS
    if keyopts[:1] != ("ec",) or cipher.startswith("aes")
])
def test_we_open_openssl_envelopes(identities: dict[str, cms.Recipient], tmp_path: Path, flag: str, cipher: str,
                                   keyopts: tuple[str, ...]) -> None:
    ec_recipient = keyopts[:1] == ("ec",)
    who = identities["p256" if ec_recipient else "rsa"]
    options = keyopts[1:] if ec_recipient else keyopts
    cert, _ = pem_files(tmp_path, who)
    sealed = run_openssl("cms", "-encrypt", "-binary", "-outform", "DER", flag, *LEGACY, "-recip", cert, *options,
                         stdin=b"from openssl")
    opened = cms.decrypt(sealed, [who])
    assert (opened.plaintext, opened.algorithms.content) == (b"from openssl", cipher)


def test_failures_all_look_alike(identities: dict[str, cms.Recipient], ca: CA) -> None:
    who = identities["rsa"]
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = cms.Recipient(make_cert("stranger", stranger_key, ca, serial=99), stranger_key)
    sealed = cms.encrypt(b"x", [cms.EnvelopeRecipient.of(who.certificate)], "aes256_gcm")
    with pytest.raises(cms.DecryptionFailed) as not_ours:
        cms.decrypt(sealed, [stranger])
    # same issuer and serial, other key: the unwrap fails
    impostor = cms.Recipient(who.certificate, stranger_key)
    with pytest.raises(cms.DecryptionFailed) as wrong_key:
        cms.decrypt(sealed, [impostor])
    info = acms.ContentInfo.load(sealed)
    mac = bytearray(info["content"]["mac"].native)
    mac[0] ^= 1
    info["content"]["mac"] = bytes(mac)
    with pytest.raises(cms.DecryptionFailed) as bad_tag:
        cms.decrypt(info.dump(force=True), [who])
    assert not_ours.value.detail == wrong_key.value.detail == bad_tag.value.detail


def test_cipher_policy_and_recipient_kinds(identities: dict[str, cms.Recipient]) -> None:
    rsa_holder, ec_holder = identities["rsa"], identities["p256"]
    sealed = cms.encrypt(b"x", [cms.EnvelopeRecipient.of(rsa_holder.certificate)], "des")
    with pytest.raises(cms.UnsupportedAlgorithm, match="des-cbc is not allowed"):
        cms.decrypt(sealed, [rsa_holder], allowed_ciphers=("aes-256-cbc",))
    with pytest.raises(cms.UnsupportedAlgorithm, match="only ECDH key agreement"):
        cms.decrypt(sealed, [ec_holder])
    with pytest.raises(cms.UnsupportedAlgorithm, match="needs an AES content cipher"):
        cms.encrypt(b"x", [cms.EnvelopeRecipient.of(ec_holder.certificate)], "tripledes_3key")
    with pytest.raises(cms.UnsupportedAlgorithm, match="needs an RSA key"):
        cms.encrypt(b"x", [cms.EnvelopeRecipient.of(ec_holder.certificate,
                                                    key_transport=cms.transport_algorithm("rsaes_pkcs1v15"))], "des")
    with pytest.raises(cms.MalformedCms, match="not an EnvelopedData"):
        cms.decrypt(cms.certificates_only([rsa_holder.certificate]), [rsa_holder])


def test_go_style_ber_envelope_opens(identities: dict[str, cms.Recipient]) -> None:
    """encryptedContent as a constructed [0] of definite-length OCTET STRING chunks (Go's
    pkcs7) decrypts like the primitive form."""
    who = identities["rsa"]
    sealed = cms.encrypt(b"chunked " * 20, [cms.EnvelopeRecipient.of(who.certificate)], "aes128_cbc")
    root = der.parse_ber(sealed)
    eci = root.children[1].children[0].children[2]
    ciphertext = eci.children[2]
    assert ciphertext.is_context(0) and not ciphertext.constructed
    data = ciphertext.value
    eci.children[2] = der.Node(der.CONTEXT, True, 0, children=[
        der.Node(der.UNIVERSAL, False, 4, data[i:i + 16]) for i in range(0, len(data), 16)
    ])
    assert cms.decrypt(der.encode(root), [who]).plaintext == b"chunked " * 20


def test_an_embedded_certificate_with_an_invalid_version_is_malformed_cms(ca: CA) -> None:
    """cryptography raises InvalidVersion (no ValueError) for version 3 (v4): every caller of
    the edge (SCEP, the Windows CES) must get MalformedCms, not an unmapped exception."""
    from asn1crypto import x509 as ax509
    bad = ax509.Certificate.load(ca[0].public_bytes(serialization.Encoding.DER)).copy()
    bad["tbs_certificate"]["version"] = 3
    signed = acms.SignedData({
        "version": "v1", "digest_algorithms": [], "encap_content_info": {"content_type": "data"},
        "certificates": [acms.CertificateChoices(name="certificate", value=bad)], "signer_infos": [],
    })
    with pytest.raises(cms.MalformedCms, match="does not parse"):
        cms.embedded_certificates(acms.SignedData.load(signed.dump()))


def test_an_unnamed_signature_algorithm_is_unsupported(identities: dict[str, cms.Recipient]) -> None:
    """asn1crypto cannot name a signature algorithm OID it does not know (ValueError from
    ``signature_algo``): that is UnsupportedAlgorithm, like any other algorithm we refuse."""
    from asn1crypto import algos
    who = identities["rsa"]
    unknown = algos.SignedDigestAlgorithm({"algorithm": "1.2.3.4.5"})
    with pytest.raises(cms.UnsupportedAlgorithm):
        cms.verify_signature(who.certificate.public_key(), b"sig", b"data", unknown, hashes.SHA256())

"""SCEP (RFC 8894) messages for the load generator: PKCSReq out, CertRep checked.

A request is what a device sends: an RSA-2048 key with a self-signed certificate, a
PKCS#10 CSR carrying the challenge password, enveloped to the CA/RA certificate with
AES-128-CBC (PKCS#1 v1.5 key transport) and signed with SHA-256 over DER-sorted
signed attributes (transactionID, messageType 19, senderNonce). Schemas are
asn1crypto's and primitives ``cryptography``'s; nothing here is shared with the
gateway's own SCEP code, so the benchmark also checks it independently.

Responses are only stored during the timed window and checked afterwards by
:func:`check_cert_rep`: the CertRep's signature and nonces, decryption of the envelope
with the device key, and the issued certificate's key and signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import cms, core, parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID

from .verify import spki, verify_issued_certificate

OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
PKCS_REQ = "19"
CERT_REP = "3"
SUCCESS = "0"

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


class ScepCheckFailed(Exception):
    """A response that does not count (wrong signature, status, nonce or certificate)."""


@dataclass(frozen=True)
class Device:
    """A device identity: RSA key and the self-signed certificate that signs its request."""

    key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    public_der: bytes


def make_device(common_name: str, key: rsa.RSAPrivateKey | None = None) -> Device:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=10)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Device(key, cert, spki(key.public_key()))


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _issuer_and_serial(cert: x509.Certificate) -> cms.IssuerAndSerialNumber:
    return cms.IssuerAndSerialNumber({
        "issuer": asn1_x509.Name.load(cert.issuer.public_bytes()),
        "serial_number": cert.serial_number,
    })


def parse_ca_certs(body: bytes, content_type: str) -> list[x509.Certificate]:
    """GetCACert: one DER certificate, or a degenerate PKCS#7 with RA and CA certificates."""
    if "ca-ra-cert" in content_type or body[:1] == b"\x30" and _is_pkcs7(body):
        info = cms.ContentInfo.load(body)
        return [x509.load_der_x509_certificate(c.chosen.dump()) for c in info["content"]["certificates"]
                if c.name == "certificate"]
    return [x509.load_der_x509_certificate(body)]


def _is_pkcs7(body: bytes) -> bool:
    try:
        return cms.ContentInfo.load(body)["content_type"].native == "signed_data"
    except (ValueError, TypeError):
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def recipient(certs: Sequence[x509.Certificate]) -> x509.Certificate:
    """Whom to encrypt to: an RA (a non-CA certificate allowed to encipher keys), else the CA."""
    for cert in certs:
        if _is_ca(cert) or not isinstance(cert.public_key(), rsa.RSAPublicKey):
            continue
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_encipherment:
                continue
        except x509.ExtensionNotFound:
            pass
        return cert
    for cert in certs:
        if isinstance(cert.public_key(), rsa.RSAPublicKey):
            return cert
    raise ScepCheckFailed("no RSA certificate to encrypt to in GetCACert")


def make_csr(device: Device, common_name: str, challenge: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
        .sign(device.key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def envelope(content: bytes, to: x509.Certificate) -> bytes:
    """EnvelopedData, AES-128-CBC, key transported with RSA PKCS#1 v1.5."""
    key, iv = os.urandom(16), os.urandom(16)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    public = to.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    ktri = cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier(name="issuer_and_serial_number", value=_issuer_and_serial(to)),
        "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
        "encrypted_key": public.encrypt(key, padding.PKCS1v15()),
    })
    enveloped = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo(name="ktri", value=ktri)],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "aes128_cbc", "parameters": core.OctetString(iv)},
            "encrypted_content": encrypted,
        },
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()


def _attribute(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


@dataclass(frozen=True)
class Request:
    """One PKCSReq ready to send, with what is needed to check its answer."""

    device: Device
    common_name: str
    transaction_id: str
    sender_nonce: bytes
    body: bytes


def pkcs_req(device: Device, common_name: str, challenge: str, to: x509.Certificate) -> Request:
    """A complete PKCSReq pkiMessage (DER ContentInfo of SignedData)."""
    transaction_id = os.urandom(16).hex()
    nonce = os.urandom(16)
    content = envelope(make_csr(device, common_name, challenge), to)
    attrs = cms.CMSAttributes(sorted((
        _attribute("content_type", cms.ContentType("data")),
        _attribute("message_digest", core.OctetString(hashlib.sha256(content).digest())),
        _attribute("signing_time", cms.Time(name="utc_time", value=core.UTCTime(dt.datetime.now(dt.UTC)))),
        _attribute(OID_TRANSACTION_ID, core.PrintableString(transaction_id)),
        _attribute(OID_MESSAGE_TYPE, core.PrintableString(PKCS_REQ)),
        _attribute(OID_SENDER_NONCE, core.OctetString(nonce)),
    ), key=lambda a: a.dump()))
    signature = device.key.sign(attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value=_issuer_and_serial(device.certificate)),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": signature,
    })
    signed = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": "data", "content": content},
        "certificates": [cms.CertificateChoices(name="certificate", value=_asn1_cert(device.certificate))],
        "signer_infos": [signer],
    })
    body = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    return Request(device, common_name, transaction_id, nonce, body)


# --- CertRep -------------------------------------------------------------------------
def _attr_values(signer: cms.SignerInfo) -> dict[str, core.Asn1Value]:
    out: dict[str, core.Asn1Value] = {}
    for attr in signer["signed_attrs"]:
        out[attr["type"].dotted] = attr["values"][0]
    return out


def _native(value: core.Asn1Value) -> object:
    if isinstance(value, core.Any):
        return value.parsed.native
    return value.native


def _find_signer(sd: cms.SignedData, signer: cms.SignerInfo, known: Sequence[x509.Certificate]) -> x509.Certificate:
    sid = signer["sid"]
    candidates = list(known)
    if sd["certificates"].native is not None:
        candidates += [x509.load_der_x509_certificate(c.chosen.dump()) for c in sd["certificates"]
                       if c.name == "certificate"]
    for cert in candidates:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if ias["serial_number"].native == cert.serial_number and \
                    ias["issuer"].dump() == asn1_x509.Name.load(cert.issuer.public_bytes()).dump():
                return cert
        elif sid.name == "subject_key_identifier":
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.chosen.native:
                return cert
    raise ScepCheckFailed("CertRep signer certificate not found")


def _verify_signer(signer: cms.SignerInfo, cert: x509.Certificate, content: bytes) -> None:
    digest_name = signer["digest_algorithm"]["algorithm"].native
    hash_cls = _HASHES.get(digest_name)
    if hash_cls is None:
        raise ScepCheckFailed(f"CertRep digest {digest_name}")
    values = _attr_values(signer)
    digest = values.get("1.2.840.113549.1.9.4")
    h = hashes.Hash(hash_cls())
    h.update(content)
    if digest is None or _native(digest) != h.finalize():
        raise ScepCheckFailed("CertRep messageDigest does not match its content")
    signed_bytes = b"\x31" + signer["signed_attrs"].dump()[1:]
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ScepCheckFailed("CertRep signer is not RSA")
    algo = signer["signature_algorithm"]["algorithm"].native
    pad: padding.AsymmetricPadding = padding.PKCS1v15()
    if algo == "rsassa_pss":
        pad = padding.PSS(padding.MGF1(hash_cls()), padding.PSS.AUTO)
    try:
        public.verify(signer["signature"].native, signed_bytes, pad, hash_cls())
    except InvalidSignature:
        raise ScepCheckFailed("CertRep signature does not verify") from None


def _encrypted_content(eci: cms.EncryptedContentInfo) -> bytes:
    """encryptedContent [0], primitive or (as Go's pkcs7 writes it) constructed of chunks."""
    for cls, method, tag, contents in _elements(eci.contents):
        if cls == 2 and tag == 0:
            if method == 0:
                return contents
            return b"".join(chunk for _, _, _, chunk in _elements(contents))
    raise ScepCheckFailed("EnvelopedData without encryptedContent")


def _elements(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(class, method, tag, contents) of each BER element in ``data``."""
    out, offset = [], 0
    while offset < len(data):
        cls, method, tag, header, contents, trailer = parser.parse(data[offset:])
        out.append((cls, method, tag, contents))
        offset += len(header) + len(contents) + len(trailer)
    return out


def _decrypt(enveloped: cms.EnvelopedData, key: rsa.RSAPrivateKey) -> bytes:
    ri = enveloped["recipient_infos"][0]
    if ri.name != "ktri":
        raise ScepCheckFailed(f"CertRep recipient info {ri.name}")
    ktri = ri.chosen
    kalg = ktri["key_encryption_algorithm"]["algorithm"].native
    if kalg == "rsaes_oaep":
        params = ktri["key_encryption_algorithm"]["parameters"]
        h = _HASHES[params["hash_algorithm"]["algorithm"].native]()
        cek = key.decrypt(ktri["encrypted_key"].native, padding.OAEP(padding.MGF1(h), h, None))
    else:
        cek = key.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
    eci = enveloped["encrypted_content_info"]
    calg = eci["content_encryption_algorithm"]
    name = calg["algorithm"].native
    iv = calg["parameters"].native
    if name.startswith("aes") and name.endswith("_cbc"):
        cipher = Cipher(algorithms.AES(cek), modes.CBC(iv))
        block = 128
    elif name in ("tripledes_3key", "des"):  # single DES is 3DES with one key three times
        cipher = Cipher(TripleDES(cek * 3 if len(cek) == 8 else cek), modes.CBC(iv))
        block = 64
    else:
        raise ScepCheckFailed(f"CertRep content encryption {name}")
    decryptor = cipher.decryptor()
    padded = decryptor.update(_encrypted_content(eci)) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(block).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def check_cert_rep(request: Request, response: bytes, known: Sequence[x509.Certificate]) -> x509.Certificate:
    """The issued certificate from a CertRep, or ScepCheckFailed saying what is wrong.

    ``known``: the GetCACert certificates (RA and CA), used to find the CertRep's
    signer and the issued certificate's issuer.
    """
    try:
        info = cms.ContentInfo.load(response)
        if info["content_type"].native != "signed_data":
            raise ScepCheckFailed("CertRep is not SignedData")
        sd = info["content"]
        signer = sd["signer_infos"][0]
        content = sd["encap_content_info"]["content"].native
        values = _attr_values(signer)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ScepCheckFailed(f"CertRep does not parse: {type(exc).__name__}") from None
    if str(_native(values.get(OID_MESSAGE_TYPE, core.PrintableString("?")))) != CERT_REP:
        raise ScepCheckFailed("not a CertRep")
    status = str(_native(values.get(OID_PKI_STATUS, core.PrintableString("?"))))
    if status != SUCCESS:
        fail = values.get(OID_FAIL_INFO)
        raise ScepCheckFailed(f"pkiStatus {status} failInfo {_native(fail) if fail is not None else None}")
    if _native(values.get(OID_RECIPIENT_NONCE, core.OctetString(b""))) != request.sender_nonce:
        raise ScepCheckFailed("recipientNonce is not our senderNonce")
    if str(_native(values.get(OID_TRANSACTION_ID, core.PrintableString("")))) != request.transaction_id:
        raise ScepCheckFailed("transactionID differs")
    if content is None:
        raise ScepCheckFailed("CertRep SUCCESS without content")
    _verify_signer(signer, _find_signer(sd, signer, known), content)
    try:
        enveloped = cms.ContentInfo.load(content)["content"]
        inner = cms.ContentInfo.load(_decrypt(enveloped, request.device.key))
        certs = [x509.load_der_x509_certificate(c.chosen.dump()) for c in inner["content"]["certificates"]
                 if c.name == "certificate"]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ScepCheckFailed(f"envelope does not open with the device key: {type(exc).__name__}") from None
    issued = next((c for c in certs if spki(c.public_key()) == request.device.public_der), None)
    if issued is None:
        raise ScepCheckFailed("no certificate for the device key in the CertRep")
    issuer = next((c for c in [*certs, *known] if c.subject == issued.issuer and _is_ca(c)), None)
    if issuer is None:
        raise ScepCheckFailed("issuer of the certificate is unknown")
    problem = verify_issued_certificate(issued, issuer, request.device.public_der)
    if problem:
        raise ScepCheckFailed(problem)
    return issued

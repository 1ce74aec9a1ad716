"""A SCEP client for tests, independent of the server where it matters.

Envelopes are made by the ``openssl cms`` CLI (DES, 3DES, AES-CBC, AES-GCM with RSA
PKCS#1 v1.5 or OAEP), so the server's decryption is checked against another
implementation; CertRep envelopes can be opened with ``openssl cms -decrypt`` the same
way. The outer SignedData needs SCEP's signed attributes, which no CLI writes, so it is
built with :func:`protocols.scep.cms.sign`; that signer is checked independently by
``openssl cms -verify`` in the suite, and the server's verifier by real clients and the
shared captures.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from protocols.scep import cms as scms
from protocols.scep.message import IssuerAndSubject
from protocols.scep.types import (
    OID_FAIL_INFO,
    OID_FAIL_INFO_TEXT,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    FailInfo,
    MessageType,
    PkiStatus,
)

OPENSSL_CIPHERS = {
    "des-cbc": "-des",
    "des-ede3-cbc": "-des3",
    "aes-128-cbc": "-aes-128-cbc",
    "aes-192-cbc": "-aes-192-cbc",
    "aes-256-cbc": "-aes-256-cbc",
    "aes-128-gcm": "-aes-128-gcm",
    "aes-192-gcm": "-aes-192-gcm",
    "aes-256-gcm": "-aes-256-gcm",
}


LEGACY = ("-provider", "legacy", "-provider", "default")
"""OpenSSL 3 keeps single DES in its legacy provider."""


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _run_openssl(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def openssl_envelope(plaintext: bytes, recipient: x509.Certificate, cipher: str = "aes-256-cbc",
                     oaep_md: str | None = None) -> bytes:
    """A DER EnvelopedData (AuthEnvelopedData for GCM) made by ``openssl cms -encrypt``."""
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = Path(tmp) / "recipient.pem"
        cert_path.write_bytes(pem(recipient))
        args = ["cms", "-encrypt", "-binary", "-outform", "DER", OPENSSL_CIPHERS[cipher], *LEGACY]
        if oaep_md:
            args += ["-recip", str(cert_path), "-keyopt", "rsa_padding_mode:oaep",
                     "-keyopt", f"rsa_oaep_md:{oaep_md}", "-keyopt", f"rsa_mgf1_md:{oaep_md}"]
        else:
            args += [str(cert_path)]
        return _run_openssl(*args, stdin=plaintext)


def openssl_decrypt(envelope: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.pem").write_bytes(pem(cert))
        (Path(tmp) / "k.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return _run_openssl("cms", "-decrypt", "-binary", *LEGACY, "-inform", "DER", "-recip", str(Path(tmp) / "c.pem"),
                            "-inkey", str(Path(tmp) / "k.pem"), stdin=envelope)


def openssl_verify(signed: bytes, trusted: list[x509.Certificate]) -> bytes:
    """``openssl cms -verify`` against the given trust anchors; returns the content."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = Path(tmp) / "ca.pem"
        ca.write_bytes(b"".join(pem(c) for c in trusted))
        return _run_openssl("cms", "-verify", "-binary", "-inform", "DER", "-CAfile", str(ca),
                            "-purpose", "any", stdin=signed)


def self_signed(key: rsa.RSAPrivateKey, cn: str, *, days: int = 30) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256())
    )


def make_csr(key: rsa.RSAPrivateKey, cn: str, *, challenge: str | None = None,
             dns: tuple[str, ...] = ()) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if challenge is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass
class CertRep:
    """A parsed CertRep, as a client sees it."""

    raw: bytes
    status: PkiStatus
    fail_info: FailInfo | None
    fail_text: str | None
    transaction_id: str
    recipient_nonce: bytes
    sender_nonce: bytes
    message_type: str
    digest: str
    signer: x509.Certificate
    envelope: bytes
    certificates: list[x509.Certificate] = field(default_factory=list)


def _attr_text(si: cms.SignerInfo, oid: str) -> str | None:
    values = scms.attribute_values(si, oid)
    if not values:
        return None
    v = values[0]
    for spec in (core.PrintableString, core.UTF8String):
        try:
            return str(v.parse(spec).native)
        except (ValueError, TypeError):
            continue
    return None


def _attr_octets(si: cms.SignerInfo, oid: str) -> bytes:
    values = scms.attribute_values(si, oid)
    return bytes(values[0].parse(core.OctetString).native) if values else b""


def parse_cert_rep(data: bytes) -> CertRep:
    """Parse and verify (signature over the signed attributes) a CertRep."""
    info = cms.ContentInfo.load(data, strict=True)
    assert info["content_type"].native == "signed_data"
    sd = info["content"]
    si = sd["signer_infos"][0]
    certs = scms.embedded_certificates(sd)
    signer = next(c for c in certs if scms.matches_identifier(c, si["sid"]))
    content = bytes(sd["encap_content_info"]["content"].native or b"")
    scms.verify_signer_info(si, signer, content)
    status = PkiStatus(_attr_text(si, OID_PKI_STATUS))
    fail = _attr_text(si, OID_FAIL_INFO)
    return CertRep(
        raw=data, status=status, fail_info=FailInfo(fail) if fail is not None else None,
        fail_text=_attr_text(si, OID_FAIL_INFO_TEXT), transaction_id=_attr_text(si, OID_TRANSACTION_ID) or "",
        recipient_nonce=_attr_octets(si, OID_RECIPIENT_NONCE), sender_nonce=_attr_octets(si, OID_SENDER_NONCE),
        message_type=_attr_text(si, OID_MESSAGE_TYPE) or "", digest=si["digest_algorithm"]["algorithm"].native,
        signer=signer, envelope=content, certificates=certs,
    )


class ScepTestClient:
    """One device: an RSA key, a signer certificate (self-signed unless renewing), and
    the recipient (RA) certificate it encrypts to."""

    def __init__(self, recipient: x509.Certificate, *, key: rsa.RSAPrivateKey | None = None,
                 signer: x509.Certificate | None = None, cn: str = "scep-device") -> None:
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signer = signer or self_signed(self.key, cn)
        self.recipient = recipient
        self.cn = cn

    def message(
        self, message_type: MessageType | str, content: bytes, *, transaction_id: str | None = None,
        cipher: str = "aes-256-cbc", oaep_md: str | None = None, digest: str = "sha256",
        sender_nonce: bytes | None = None, signing_time: dt.datetime | None = None,
        envelope: bytes | None = None,
    ) -> tuple[bytes, str, bytes]:
        """A signed pkiMessage; returns (DER, transactionID, senderNonce)."""
        tid = transaction_id or os.urandom(16).hex().upper()
        nonce = sender_nonce or os.urandom(16)
        env = envelope if envelope is not None else openssl_envelope(content, self.recipient, cipher, oaep_md)
        mtype = message_type.value if isinstance(message_type, MessageType) else message_type
        attrs = [
            scms.attribute(OID_MESSAGE_TYPE, core.PrintableString(mtype)),
            scms.attribute(OID_TRANSACTION_ID, core.PrintableString(tid)),
            scms.attribute(OID_SENDER_NONCE, core.OctetString(nonce)),
        ]
        body = scms.sign(
            env, scms.Signer(self.signer, self.key), digest_name=digest, attributes=attrs,
            certificates=[self.signer], signing_time=signing_time or dt.datetime.now(dt.UTC),
        )
        return body, tid, nonce

    def pkcs_req(self, csr_der: bytes, **kw: object) -> tuple[bytes, str, bytes]:
        return self.message(MessageType.PKCS_REQ, csr_der, **kw)  # type: ignore[arg-type]

    def cert_poll(self, issuer: x509.Name, subject: x509.Name, transaction_id: str, **kw: object) -> tuple[bytes, str, bytes]:
        from asn1crypto import x509 as ax

        content = IssuerAndSubject({
            "issuer": ax.Name.load(issuer.public_bytes()), "subject": ax.Name.load(subject.public_bytes()),
        }).dump()
        return self.message(MessageType.CERT_POLL, content, transaction_id=transaction_id, **kw)  # type: ignore[arg-type]

    def issuer_and_serial(self, message_type: MessageType, issuer: x509.Name, serial: int,
                          **kw: object) -> tuple[bytes, str, bytes]:
        from asn1crypto import x509 as ax

        content = cms.IssuerAndSerialNumber({"issuer": ax.Name.load(issuer.public_bytes()),
                                             "serial_number": serial}).dump()
        return self.message(message_type, content, **kw)  # type: ignore[arg-type]

    def open(self, rep: CertRep, *, with_openssl: bool = True) -> bytes:
        """The degenerate PKCS#7 inside a SUCCESS CertRep's envelope."""
        if with_openssl:
            return openssl_decrypt(rep.envelope, self.signer, self.key)
        from protocols.scep.envelope import Recipient, open_envelope

        return open_envelope(rep.envelope, [Recipient(self.signer, self.key)]).plaintext

    def issued(self, rep: CertRep, *, with_openssl: bool = True) -> list[x509.Certificate]:
        return scms.certificates_of_degenerate(self.open(rep, with_openssl=with_openssl))

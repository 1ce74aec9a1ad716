"""The pkcsPKIEnvelope of a SCEP request (protocols/scep/envelope.py over
gateway/edge/cms.py), and what the plaintext is read as: the PKCSReq CSR, the CertPoll
IssuerAndSubject, the GetCert/GetCRL IssuerAndSerialNumber (protocols/scep/message.py,
service.py).

The recipients are the RA keys published with the recorded fixtures and the Apple
capture's test CA, so mutated envelopes addressed to them get past key transport.
Declared errors: :class:`ScepFailure` (a FAILURE CertRep), :class:`MalformedMessage`
(HTTP 400), the core's :class:`GatewayError` (a FAILURE CertRep via ``fail_info_for``).
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.errors import GatewayError
from protocols.scep.envelope import Recipient, open_envelope
from protocols.scep.message import load_issuer_and_serial, load_issuer_and_subject, parse_pki_message
from protocols.scep.service import parse_request_csr
from protocols.scep.types import MalformedMessage, ScepFailure

from ..seeds import captures, capture_files, exchanges, request_body

DESCRIPTION = "SCEP pkcsPKIEnvelope (EnvelopedData/AuthEnvelopedData) and its plaintext"


@functools.cache
def recipients() -> tuple[Recipient, ...]:
    out = []
    for x in exchanges("scep"):
        meta = x["meta"]
        key = load_pem_private_key(meta["ra_key"].encode(), None)
        out.append(Recipient(x509.load_pem_x509_certificate(meta["ra_certificate"].encode()), key))  # type: ignore[arg-type]
    apple = captures("scep")
    if apple is not None:
        testca = apple / "apple-macos-pkcsreq" / "testca"
        key = load_pem_private_key((testca / "ca.key.unencrypted.pem").read_bytes(), None)
        out.append(Recipient(x509.load_pem_x509_certificate((testca / "ca.pem").read_bytes()), key))  # type: ignore[arg-type]
    unique = {r.certificate.fingerprint(hashes.SHA256()): r for r in out}
    return tuple(unique.values())


def _messages() -> list[bytes]:
    out = [request_body(x) for x in exchanges("scep")]
    out += capture_files("scep", "apple-macos-pkcsreq/PKCSReq.der")
    out += capture_files("scep", "cryptlib-samples/scep_req2.der")
    return out


def seeds() -> list[bytes]:
    out = []
    for raw in _messages():
        try:
            content = parse_pki_message(raw).content
        except MalformedMessage:
            continue
        if content:
            out.append(content)
    out += capture_files("scep", "cryptlib-samples/scep_req1.der")
    return out


def fixture_plaintexts() -> list[bytes]:
    """The decrypted contents of the recorded requests (CSRs), as seeds for other targets."""
    out = []
    for envelope in seeds():
        try:
            out.append(open_envelope(envelope, recipients()).plaintext)
        except (ScepFailure, MalformedMessage):
            pass
    return out


def read_plaintext(plaintext: bytes) -> None:
    """The three things a request envelope can hold, each as the service reads it."""
    for reader in (parse_request_csr, load_issuer_and_subject, load_issuer_and_serial):
        try:
            reader(plaintext)
        except (ScepFailure, GatewayError):
            pass


def test_one_input(data: bytes) -> None:
    try:
        opened = open_envelope(data, recipients())
    except (ScepFailure, MalformedMessage):
        return
    read_plaintext(opened.plaintext)

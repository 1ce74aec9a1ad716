"""pkiMessage in, CertRep out (RFC 8894 section 3.2 and 3.3).

:func:`parse_pki_message` reads what a CertRep needs to be addressed (transactionID,
senderNonce, signer) without trusting anything yet; :func:`verify_pki_message` then
checks the signature, digest and signing time. Keeping the two apart lets a request
that fails verification still get a correctly addressed FAILURE reply.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from . import cms as scms
from gateway.edge.der import normalize_octet_strings
from .signer import SignerCertificate
from .types import (
    OID_FAIL_INFO,
    OID_FAIL_INFO_TEXT,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
    FailInfo,
    MalformedMessage,
    MessageType,
    PkiStatus,
    ScepFailure,
)

MAX_TRANSACTION_ID = 255
_STRING_TAGS = (core.PrintableString, core.UTF8String, core.IA5String, core.TeletexString)


class IssuerAndSubject(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """The CertPoll (GetCertInitial) message content (RFC 8894 section 3.3.3)."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


@dataclass(frozen=True)
class PkiMessage:
    """A parsed, not yet verified, request pkiMessage."""

    raw: bytes
    message_type: MessageType | None  # None: a type this server does not know
    message_type_text: str
    transaction_id: str
    transaction_id_value: core.Asn1Value  # echoed verbatim in the CertRep
    sender_nonce: bytes
    signer_info: cms.SignerInfo
    signer_certificate: SignerCertificate | None  # read leniently (old clients' self-made ones)
    certificates: tuple[SignerCertificate, ...]
    content: bytes  # the encapsulated pkcsPKIEnvelope (DER), empty when absent
    digest_name: str
    signing_time: dt.datetime | None = None

    @property
    def signer_key_sha256(self) -> str:
        if self.signer_certificate is None:
            return ""
        return self.signer_certificate.key_sha256


def _single(values: list[core.Asn1Value], name: str) -> core.Asn1Value:
    if len(values) != 1:
        raise MalformedMessage(f"the pkiMessage must carry exactly one {name} attribute")
    return values[0]


def _text(value: core.Asn1Value, name: str) -> str:
    """A string attribute; PrintableString per the RFC, other string types tolerated."""
    for spec in _STRING_TAGS:
        try:
            parsed = value.parse(spec) if isinstance(value, core.Any) else value
            if isinstance(parsed, spec):
                return str(parsed.native)
        except (ValueError, TypeError):
            continue
    raise MalformedMessage(f"the {name} attribute is not a string")


def _octets(value: core.Asn1Value, name: str) -> bytes:
    try:
        parsed = value.parse(core.OctetString) if isinstance(value, core.Any) else value
        return bytes(parsed.native)
    except (ValueError, TypeError) as exc:
        raise MalformedMessage(f"the {name} attribute is not an OCTET STRING") from exc


_UNPARSEABLE = (ValueError, TypeError, KeyError, IndexError, x509.InvalidVersion, UnsupportedAlgorithm)
"""What asn1crypto and cryptography raise on corrupt bytes (found by mutating real requests)."""


def parse_pki_message(data: bytes) -> PkiMessage:
    """Read a request pkiMessage far enough to answer it; raises :class:`MalformedMessage`."""
    try:
        return _parse_pki_message(data)
    except _UNPARSEABLE as exc:
        raise MalformedMessage("the pkiMessage does not parse") from exc


def _parse_pki_message(data: bytes) -> PkiMessage:
    if not data:
        raise MalformedMessage("empty pkiMessage")
    try:
        info = scms.load_content_info(data)
    except MalformedMessage:
        # definite-length constructed OCTET STRINGs (Go, Java encoders): flatten and retry
        info = scms.load_content_info(normalize_octet_strings(data))
    if info["content_type"].native != "signed_data":
        raise MalformedMessage("a pkiMessage is a CMS SignedData")
    signed: cms.SignedData = info["content"]
    signers = list(signed["signer_infos"])
    if len(signers) != 1:
        raise MalformedMessage("a pkiMessage has exactly one signer")
    signer_info = signers[0]
    if signer_info["signed_attrs"].native is None:
        raise MalformedMessage("a pkiMessage carries signed attributes")
    tid_value = _single(scms.attribute_values(signer_info, OID_TRANSACTION_ID), "transactionID")
    transaction_id = _text(tid_value, "transactionID")
    if not transaction_id or len(transaction_id) > MAX_TRANSACTION_ID:
        raise MalformedMessage(f"the transactionID must be 1-{MAX_TRANSACTION_ID} characters")
    type_text = _text(_single(scms.attribute_values(signer_info, OID_MESSAGE_TYPE), "messageType"), "messageType")
    try:
        message_type: MessageType | None = MessageType(type_text.strip())
    except ValueError:
        message_type = None
    nonce = _octets(_single(scms.attribute_values(signer_info, OID_SENDER_NONCE), "senderNonce"), "senderNonce")
    if not nonce:
        raise MalformedMessage("the senderNonce is empty")
    certs = _embedded_certificates(signed)
    signer_cert = next((c for c in certs if c.matches(signer_info["sid"])), None)
    encap = signed["encap_content_info"]
    content = b""
    if encap["content"].native is not None:
        if encap["content_type"].native != "data":
            raise MalformedMessage("the pkiMessage content type must be data")
        content = bytes(encap["content"].native)
    signing_time = None
    times = scms.attribute_values(signer_info, "1.2.840.113549.1.9.5")
    if times:
        signing_time = times[0].native
    return PkiMessage(
        raw=data,
        message_type=message_type,
        message_type_text=type_text,
        transaction_id=transaction_id,
        transaction_id_value=tid_value,
        sender_nonce=nonce,
        signer_info=signer_info,
        signer_certificate=signer_cert,
        certificates=tuple(certs),
        content=content,
        digest_name=str(signer_info["digest_algorithm"]["algorithm"].native),
        signing_time=signing_time,
    )


def _embedded_certificates(signed: cms.SignedData) -> list[SignerCertificate]:
    """The X.509 certificates of a pkiMessage, read leniently (:mod:`.signer`)."""
    certs = signed["certificates"]
    if isinstance(certs, core.Void):
        return []
    out = []
    for choice in certs:
        if choice.name != "certificate":
            continue  # attribute or other certificates: never signers
        try:
            out.append(SignerCertificate.load(choice.chosen.dump()))
        except (ValueError, TypeError) as exc:
            raise MalformedMessage("an embedded certificate does not parse") from exc
    return out


def verify_pki_message(
    msg: PkiMessage, *, now: dt.datetime, allowed_digests: Sequence[str], max_skew: dt.timedelta | None
) -> None:
    """Signature, digest policy and signingTime; failures become CertRep failInfos."""
    if msg.digest_name not in allowed_digests:
        raise ScepFailure(FailInfo.BAD_ALG, f"digest algorithm {msg.digest_name} is not allowed")
    if msg.signer_certificate is None:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the signer certificate is not in the pkiMessage")
    try:
        scms.verify_signer_info(msg.signer_info, msg.signer_certificate.public_key(), msg.content)
    except UnsupportedAlgorithm as exc:
        raise ScepFailure(FailInfo.BAD_ALG, "the signer certificate's key type is not supported") from exc
    except _UNPARSEABLE as exc:  # e.g. the signer certificate's key does not load
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, "the signer certificate or signature does not parse") from exc
    if max_skew is not None and msg.signing_time is not None:
        if abs(msg.signing_time - now) > max_skew:
            raise ScepFailure(FailInfo.BAD_TIME, "signingTime is too far from the server's time")


# --- responses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a request led to: a payload for SUCCESS, or PENDING, or a failure."""

    status: PkiStatus
    payload: bytes = b""  # degenerate certs-only SignedData (SUCCESS only)
    failure: ScepFailure | None = None
    issued: x509.Certificate | None = None

    @classmethod
    def success(cls, payload: bytes, issued: x509.Certificate | None = None) -> Outcome:
        return cls(PkiStatus.SUCCESS, payload=payload, issued=issued)

    @classmethod
    def pending(cls) -> Outcome:
        return cls(PkiStatus.PENDING)

    @classmethod
    def failed(cls, failure: ScepFailure) -> Outcome:
        return cls(PkiStatus.FAILURE, failure=failure)


def response_digest(msg: PkiMessage) -> str:
    """Answer with the client's digest when we support it (old clients know only SHA-1)."""
    return msg.digest_name if msg.digest_name in scms.DIGESTS else "sha256"


def new_nonce() -> bytes:
    return os.urandom(16)


def build_cert_rep(
    msg: PkiMessage,
    outcome: Outcome,
    *,
    signer: scms.Signer,
    certificates: Sequence[x509.Certificate],
    envelope: bytes = b"",
    now: dt.datetime,
    sender_nonce: bytes | None = None,
) -> bytes:
    """A CertRep addressed to ``msg``: transactionID echoed, recipientNonce = its senderNonce."""
    attrs = [
        scms.attribute(OID_MESSAGE_TYPE, core.PrintableString(MessageType.CERT_REP.value)),
        scms.attribute(OID_PKI_STATUS, core.PrintableString(outcome.status.value)),
        scms.attribute(OID_TRANSACTION_ID, msg.transaction_id_value),
        scms.attribute(OID_SENDER_NONCE, core.OctetString(sender_nonce or new_nonce())),
        scms.attribute(OID_RECIPIENT_NONCE, core.OctetString(msg.sender_nonce)),
    ]
    if outcome.status is PkiStatus.FAILURE:
        assert outcome.failure is not None
        attrs.append(scms.attribute(OID_FAIL_INFO, core.PrintableString(outcome.failure.fail_info.value)))
        attrs.append(scms.attribute(OID_FAIL_INFO_TEXT, core.UTF8String(outcome.failure.text[:512])))
    return scms.sign(
        envelope if outcome.status is PkiStatus.SUCCESS else b"",
        signer,
        digest_name=response_digest(msg),
        attributes=attrs,
        certificates=certificates,
        signing_time=now,
    )


# --- contents of the envelopes -----------------------------------------------------------


def load_issuer_and_subject(data: bytes) -> tuple[asn1_x509.Name, asn1_x509.Name]:
    """CertPoll content; names stay asn1crypto Names, compared the RFC 5280 way."""
    try:
        parsed = IssuerAndSubject.load(data, strict=True)
        _ = parsed.native
        return parsed["issuer"], parsed["subject"]
    except (ValueError, TypeError, AttributeError) as exc:  # AttributeError: a REAL etc. in a name
        raise ScepFailure(FailInfo.BAD_REQUEST, "the CertPoll content is not an IssuerAndSubject") from exc


def load_issuer_and_serial(data: bytes) -> tuple[asn1_x509.Name, int]:
    """GetCert / GetCRL content."""
    try:
        parsed = cms.IssuerAndSerialNumber.load(data, strict=True)
        _ = parsed.native
        return parsed["issuer"], int(parsed["serial_number"].native)
    except (ValueError, TypeError, AttributeError) as exc:  # AttributeError: a REAL etc. in a name
        raise ScepFailure(FailInfo.BAD_REQUEST, "the content is not an IssuerAndSerialNumber") from exc


def asn1_name(name: x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.public_bytes())

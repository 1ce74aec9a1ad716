"""Who the EST client is: HTTP Basic, a TLS client certificate, or both (per label).

The HTTPS listener has already verified any client certificate against the
gateway's CAs and the configured ``[tls].client_trust_anchors``; this module
decides whether *this label* accepts it:

* a certificate the gateway issued counts when it comes from the label's CA,
  is valid in the store (not revoked or on hold) and not expired; a revoked or
  expired one is refused outright, whatever else the client presents;
* a certificate issued directly by one of the label's ``client_trust_anchors``
  (a manufacturer's IDevID CA, say) counts while it is within its validity;
* any other certificate is ignored for this label.

Basic users are the label's enrollment credentials (``door.credentials``, scoped to
the label): checked with scrypt off the event loop, an unknown user costing the same
as a wrong password, and locked out for a while after repeated wrong passwords (the
count is kept in the store, so every worker and replica sees it). A locked user is
answered like a wrong password: ``401`` with the label's Basic challenge.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from gateway.door import DEFAULT_LOCKOUT, CertificateRecord, Door, LockoutPolicy
from gateway.errors import Forbidden, Unauthorized
from gateway.web.tls import peer_certificate

from .policy import LabelPolicy


LOCKOUT: LockoutPolicy = DEFAULT_LOCKOUT
"""5 consecutive wrong passwords lock a user out for 15 minutes (DIVERGENCES.md)."""


class CertificateStanding(enum.Enum):
    ISSUED = "issued"  # issued by the gateway on this label's CA, valid
    ANCHORED = "anchored"  # issued by one of the label's trust anchors
    REVOKED = "revoked"  # issued by the gateway, revoked or on hold
    EXPIRED = "expired"
    FOREIGN = "foreign"  # trusted by the listener, not by this label


@dataclass(frozen=True)
class PresentedCertificate:
    certificate: x509.Certificate
    fingerprint: str  # SHA-256 of the DER, hex
    standing: CertificateStanding
    record: CertificateRecord | None  # the store's record when the gateway issued it

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()


@dataclass(frozen=True)
class Client:
    """An authenticated EST client, as far as one label is concerned."""

    username: str | None
    certificate: PresentedCertificate | None  # set only when the label accepted it

    @property
    def key(self) -> str:
        """Stable identity for remembering held requests."""
        parts = []
        if self.certificate is not None:
            parts.append(f"cert:{self.certificate.fingerprint}")
        if self.username is not None:
            parts.append(f"basic:{self.username}")
        return "+".join(parts)

    @property
    def actor(self) -> str:
        """For the audit trail: the user name and/or the certificate subject."""
        parts = []
        if self.username is not None:
            parts.append(f"est-user:{self.username}")
        if self.certificate is not None:
            parts.append(f"est-cert:{self.certificate.subject}")
        return " ".join(parts)

    @property
    def method(self) -> str:
        return "+".join(m for m, on in (("certificate", self.certificate), ("basic", self.username)) if on)


def _within_validity(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


async def presented_certificate(request: web.Request, door: Door, policy: LabelPolicy) -> PresentedCertificate | None:
    """The TLS client certificate and where it stands for this label (None if none was sent)."""
    cert = peer_certificate(request.transport)
    if cert is None:
        return None
    now = door.clock()
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    record = await door.certificate_by_fingerprint(fingerprint)
    if record is not None:
        if record.status != "valid":
            standing = CertificateStanding.REVOKED
        elif not _within_validity(cert, now):
            standing = CertificateStanding.EXPIRED
        elif record.ca_id == policy.ca_id:
            standing = CertificateStanding.ISSUED
        else:
            standing = CertificateStanding.FOREIGN
        return PresentedCertificate(cert, fingerprint, standing, record)
    for anchor in policy.trust_anchors:
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        standing = CertificateStanding.ANCHORED if _within_validity(cert, now) else CertificateStanding.EXPIRED
        return PresentedCertificate(cert, fingerprint, standing, None)
    return PresentedCertificate(cert, fingerprint, CertificateStanding.FOREIGN, None)


async def check_password(door: Door, policy: LabelPolicy, header: str) -> str:
    """The user name when the Basic credentials are right for this label, else Unauthorized.

    ISO-8859-1 credentials are still accepted (``latin1_fallback``): EST clients written
    before RFC 7617 send them, and this edge always read them.
    """
    user = await door.credentials.verify_basic(policy.label, header, lockout=LOCKOUT, latin1_fallback=True)
    if user.username is None:  # verify_basic only matches user credentials, which have a name
        raise Unauthorized("wrong user name or password")
    return user.username


def refuse_bad_certificate(presented: PresentedCertificate | None) -> None:
    """A revoked or expired certificate ends the request, whatever else came with it."""
    if presented is None:
        return
    if presented.standing is CertificateStanding.REVOKED:
        raise Forbidden("the TLS client certificate is revoked")
    if presented.standing is CertificateStanding.EXPIRED:
        raise Forbidden("the TLS client certificate has expired")


async def authenticate(request: web.Request, door: Door, policy: LabelPolicy,
                       presented: PresentedCertificate | None) -> Client:
    """Apply the label's ``auth`` rule to the request's certificate and Basic credentials."""
    refuse_bad_certificate(presented)
    accepted = presented is not None and policy.accepts_certificates and (
        (presented.standing is CertificateStanding.ISSUED and policy.accept_issued_certificates)
        or presented.standing is CertificateStanding.ANCHORED
    )
    cert = presented if accepted else None
    header = request.headers.get("Authorization")
    username = await check_password(door, policy, header) if header is not None and policy.accepts_basic else None

    if policy.auth in ("certificate", "both") and cert is None:
        if presented is None:
            raise Forbidden("this label requires a TLS client certificate")
        raise Forbidden("this label does not accept the presented TLS client certificate")
    if policy.auth in ("basic", "both") and username is None:
        raise Unauthorized("HTTP Basic credentials are required")
    if policy.auth == "either" and cert is None and username is None:
        if presented is not None:
            raise Unauthorized("the TLS client certificate is not accepted by this label; "
                               "send HTTP Basic credentials or a certificate the label accepts")
        raise Unauthorized("authenticate with HTTP Basic credentials or a TLS client certificate")
    return Client(username=username, certificate=cert)

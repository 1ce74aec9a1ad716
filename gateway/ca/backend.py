"""The CA backend interface: the seam every protocol ultimately issues through.

A backend is one issuing CA. The local CA (:mod:`gateway.ca.local`) is the default
implementation; a connector to another CA (AD CS, EJBCA, a cloud CA) implements the
same interface. Protocols never call a backend directly: they go through
:class:`gateway.authority.Authority`, which applies protocol configuration,
end-entity state and audit events around these calls.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


class RevocationReason(enum.IntEnum):
    """RFC 5280 CRLReason codes (7 is unused by the RFC)."""

    unspecified = 0
    key_compromise = 1
    ca_compromise = 2
    affiliation_changed = 3
    superseded = 4
    cessation_of_operation = 5
    certificate_hold = 6
    remove_from_crl = 8
    privilege_withdrawn = 9
    aa_compromise = 10

    @classmethod
    def parse(cls, value: str | int) -> "RevocationReason":
        """Accept a code (``1``), snake or camel name (``keyCompromise``)."""
        from ..errors import BadRequest

        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            try:
                return cls(int(value))
            except ValueError:
                raise BadRequest(f"unknown revocation reason code {value}") from None
        norm = "".join("_" + c.lower() if c.isupper() else c for c in str(value)).lstrip("_")
        norm = norm.replace("-", "_")
        try:
            return cls[norm]
        except KeyError:
            raise BadRequest(f"unknown revocation reason {value!r}") from None

    @property
    def x509_flag(self) -> x509.ReasonFlags:
        return _REASON_FLAGS[self]


_REASON_FLAGS = {
    RevocationReason.unspecified: x509.ReasonFlags.unspecified,
    RevocationReason.key_compromise: x509.ReasonFlags.key_compromise,
    RevocationReason.ca_compromise: x509.ReasonFlags.ca_compromise,
    RevocationReason.affiliation_changed: x509.ReasonFlags.affiliation_changed,
    RevocationReason.superseded: x509.ReasonFlags.superseded,
    RevocationReason.cessation_of_operation: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.certificate_hold: x509.ReasonFlags.certificate_hold,
    RevocationReason.remove_from_crl: x509.ReasonFlags.remove_from_crl,
    RevocationReason.privilege_withdrawn: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.aa_compromise: x509.ReasonFlags.aa_compromise,
}


class CertState(str, enum.Enum):
    VALID = "valid"
    REVOKED = "revoked"
    HOLD = "hold"  # suspended: revoked with certificateHold, may be released


@dataclass(frozen=True)
class IssueOverrides:
    """What a request (or the protocol configuration) asks to change from the CSR."""

    subject: x509.Name | None = None
    sans: tuple[x509.GeneralName, ...] | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    validity: dt.timedelta | None = None
    extensions: tuple[x509.Extension[x509.ExtensionType], ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    """Values for ``<variables>`` in a profile's RDN format (e.g. ``<deviceId>``)."""


@dataclass(frozen=True)
class IssueRequest:
    """A CSR to be signed under a named profile."""

    csr: x509.CertificateSigningRequest
    profile: str
    overrides: IssueOverrides = IssueOverrides()
    entity_id: str | None = None
    protocol_config: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class KeygenRequest:
    """Server-side key generation: the gateway makes the key pair and signs for it."""

    profile: str
    key_algorithm: str  # "RSA-2048" .. "EC-P521"
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...] = ()
    overrides: IssueOverrides = IssueOverrides()
    pkcs12_password: bytes | None = None
    entity_id: str | None = None
    protocol_config: str | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate already committed to the store."""

    ca_id: str
    serial: int
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuer first, up to (and including) the root


@dataclass(frozen=True)
class GeneratedKeyCertificate:
    issued: IssuedCertificate
    private_key: PrivateKeyTypes
    pkcs12: bytes | None  # password-protected when a password was given


@dataclass(frozen=True)
class PendingRequest:
    """A request held for operator approval; poll with its ``request_id``."""

    request_id: str
    ca_id: str
    status: str  # "pending" | "approved" | "rejected" | "issued"
    serial: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class CertificateStatus:
    serial: int
    ca_id: str
    state: CertState
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None
    reason: RevocationReason | None = None
    invalidity_date: dt.datetime | None = None

    @property
    def expired(self) -> bool:
        return self.not_after < dt.datetime.now(dt.timezone.utc)


class CABackend(abc.ABC):
    """One issuing CA. Every method is async so connectors can talk to remote CAs."""

    id: str

    @abc.abstractmethod
    async def issue(self, request: IssueRequest) -> IssuedCertificate:
        """Check proof of possession and policy, sign, commit, then return."""

    @abc.abstractmethod
    async def generate_and_issue(self, request: KeygenRequest) -> GeneratedKeyCertificate:
        """Generate a key pair server-side and issue for it."""

    @abc.abstractmethod
    async def submit_pending(self, request: IssueRequest) -> PendingRequest:
        """Validate the request now and hold it for operator approval."""

    @abc.abstractmethod
    async def pending_status(self, request_id: str) -> PendingRequest:
        """Where a held request stands (the certificate's serial once issued)."""

    @abc.abstractmethod
    async def approve(self, request_id: str, operator: str) -> IssuedCertificate:
        """Approve a held request and issue it."""

    @abc.abstractmethod
    async def reject(self, request_id: str, operator: str, reason: str) -> PendingRequest:
        """Reject a held request; it can never be issued afterwards."""

    @abc.abstractmethod
    async def revoke(
        self,
        serial: int,
        reason: RevocationReason,
        invalidity_date: dt.datetime | None = None,
    ) -> CertificateStatus:
        """Revoke for good (``certificate_hold`` suspends instead, see :meth:`suspend`)."""

    @abc.abstractmethod
    async def suspend(self, serial: int) -> CertificateStatus:
        """Put on hold (revoked with reason certificateHold)."""

    @abc.abstractmethod
    async def unsuspend(self, serial: int) -> CertificateStatus:
        """Release a hold; the certificate is valid again and leaves the next CRL."""

    @abc.abstractmethod
    async def status(self, serial: int) -> CertificateStatus:
        """Current status of a certificate this CA issued (NotFound otherwise)."""

    @abc.abstractmethod
    async def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate first, then its issuers up to the root."""

    @abc.abstractmethod
    async def crl(self, force: bool = False) -> bytes:
        """The current full CRL (DER); regenerated when due, or now when forced."""

    def capabilities(self) -> dict[str, Any]:
        """Optional features (server keygen, pending, suspend, crl) a backend offers."""
        return {"keygen": True, "pending": True, "suspend": True, "crl": True}

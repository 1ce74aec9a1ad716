"""The CA backend interface, and the values that cross the core's door.

A backend is one issuing CA. The local CA (:mod:`gateway.ca.local`) is the default
kind; a connector to another CA (AD CS, EJBCA, an ACME CA) or a key in an HSM is
another kind behind the same interface (:mod:`gateway.ca.kinds`). Protocols never
call a backend: they go through their door to :class:`gateway.authority.Authority`,
which applies protocol configuration, end-entity state, persistence and audit
around these calls.
"""

from __future__ import annotations

import abc
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

from ..profiles.model import Profile

if TYPE_CHECKING:
    from .signer import IssuerKey


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
class CsrPolicy:
    """What a protocol configuration accepts in a CSR beyond the strict rule, checked by
    :func:`gateway.ca.pop.check_proof_of_possession`: SHA-1 RSA signatures, and subject
    PrintableStrings with characters PrintableString lacks (retagged UTF8String when
    the CSR is read). Both off unless the configuration says so."""

    sha1_signatures: bool = False
    legacy_strings: bool = False


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
    csr_policy: CsrPolicy = CsrPolicy()
    """How the CSR's proof of possession is checked (kept with a held request)."""


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
    retry_after: int | None = None
    """Seconds the upstream CA that holds it asked us to wait before asking again (its answer
    to this poll: EST 202 Retry-After, a CES pending answer), when it said."""


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


@dataclass(frozen=True)
class SignRequest:
    """What the core asks a CA to sign: a checked public key under a profile.

    The Authority has already applied the protocol configuration, the end entity's
    state and proof of possession; a backend only turns this into a certificate.
    ``csr`` is None for keys the gateway generated itself (server keygen, RA keys).
    """

    profile: Profile
    public_key: CertificatePublicKeyTypes
    csr: x509.CertificateSigningRequest | None
    overrides: IssueOverrides = IssueOverrides()
    entity_id: str | None = None
    protocol_config: str | None = None


@dataclass(frozen=True)
class Signed:
    """A certificate the CA signed. Not yet stored: the Authority records it."""

    certificate: x509.Certificate


@dataclass(frozen=True)
class PendingUpstream:
    """The CA took the request but has not decided yet (an upstream CA's own approval
    queue): the Authority keeps ``handle`` and polls :meth:`CABackend.poll` later."""

    handle: str
    retry_after: int = 60


SignResult = Signed | PendingUpstream


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked certificate, for a CRL."""

    serial: int
    revoked_at: dt.datetime
    reason: RevocationReason
    invalidity_date: dt.datetime | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend offers beyond signing; the core consults these before asking.

    ``crl``: it signs CRLs (the core gathers the entries, numbers and stores them).
    ``ocsp``: it provides a delegated OCSP signing identity.
    ``hold``: a hold (certificateHold) can be released again at this CA.
    ``needs_csr``: it signs CSRs, not public keys (an upstream CA): where the gateway
    holds the key itself (server key generation, an RA key) the core makes the CSR.
    ``holds``: it may take a request and decide later (:class:`PendingUpstream`), so a
    protocol must be ready to answer "pending" even where its configuration approves at once.
    """

    crl: bool = False
    ocsp: bool = False
    hold: bool = False
    needs_csr: bool = False
    holds: bool = False


class CABackend(abc.ABC):
    """One issuing CA: it signs, revokes, and returns its chain. Nothing else.

    Persistence, the approval queue, end entities and the audit trail belong to the
    Authority, which owns the transaction around each call. A backend kind (the local
    CA, an upstream ACME/EST/AD CS connector, an HSM-held key) is registered in
    :mod:`gateway.ca.kinds` and needs no change anywhere else in the core.
    """

    id: str
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    async def sign(self, request: SignRequest) -> SignResult:
        """Sign (each call with a fresh serial), or hand back a handle to poll."""

    async def check(self, request: SignRequest) -> None:
        """Refuse now what :meth:`sign` would refuse (requests held for approval); a
        backend that cannot tell in advance accepts."""

    async def poll(self, handle: str) -> SignResult:
        """Where a request this CA holds stands (backends that answer PendingUpstream)."""
        from ..errors import Unavailable

        raise Unavailable(f"CA {self.id} does not hold requests")

    @abc.abstractmethod
    async def revoke(self, serial: int, reason: RevocationReason,
                     invalidity_date: dt.datetime | None = None) -> str | None:
        """Tell the CA a certificate is revoked (``certificate_hold``: put on hold). None
        when the CA knows now (or publishes from the core's records); else why it could not be
        told (an upstream whose protocol has no revocation), which the core audits."""

    async def revoke_certificate(self, certificate: x509.Certificate, reason: RevocationReason,
                                 invalidity_date: dt.datetime | None = None) -> str | None:
        """:meth:`revoke` for a CA that needs the certificate itself, not only its serial
        (ACME's revokeCert); the core calls this one."""
        return await self.revoke(certificate.serial_number, reason, invalidity_date)

    async def release_hold(self, serial: int) -> None:
        """Release a hold (only asked when ``capabilities.hold``)."""
        from ..errors import Unavailable

        raise Unavailable(f"CA {self.id} cannot release a hold")

    @abc.abstractmethod
    async def chain(self) -> tuple[x509.Certificate, ...]:
        """This CA's certificate first, then its issuers up to the root."""

    async def sign_crl(self, entries: list[RevokedEntry], number: int,
                       this_update: dt.datetime, next_update: dt.datetime) -> bytes:
        """A full CRL (DER) over ``entries`` (only asked when ``capabilities.crl``)."""
        from ..errors import Unavailable

        raise Unavailable(f"CA {self.id} does not sign CRLs")

    async def ocsp_signer(self, validity: dt.timedelta) -> tuple[x509.Certificate, "IssuerKey"]:
        """Who signs this CA's OCSP responses (only when ``capabilities.ocsp``): a delegated
        OCSP signing certificate and its key, or the CA's own certificate and key."""
        from ..errors import Unavailable

        raise Unavailable(f"CA {self.id} has no OCSP signer")

    async def close(self) -> None:
        """Release what the backend holds open (an upstream CA's HTTP connections)."""

"""Plain records the store reads and writes; no SQL here.

Serial numbers are kept as lowercase hex strings without leading zeros (they are
up to 159 bits, beyond any SQL integer type); use :func:`serial_hex` and
:func:`serial_int` to convert. All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def serial_int(value: str) -> int:
    return int(value, 16)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@dataclass
class CARecord:
    """One CA the gateway knows: a root, an issuing CA, or an imported external root."""

    id: str
    name: str
    kind: str  # "root" | "intermediate" | "external_root" | "external_signed"
    state: str  # "active" | "awaiting_certificate" | "disabled"
    parent_id: str | None
    certificate_pem: str | None  # None while an external CA has not signed our CSR yet
    chain_pem: str  # issuers above this CA, issuer first (empty for a root)
    key_pem_encrypted: str | None  # None for an imported external root (no key held)
    key_algorithm: str
    csr_pem: str | None = None  # kept for external_signed CAs
    ocsp_certificate_pem: str | None = None
    ocsp_key_pem_encrypted: str | None = None
    crl_number: int = 0
    crl_der: bytes | None = None
    crl_this_update: dt.datetime | None = None
    crl_next_update: dt.datetime | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    backend: str = "local"  # the backend kind that signs for it (gateway.ca.kinds)
    backend_settings: dict[str, Any] = field(default_factory=dict)  # the kind's own options


@dataclass
class CertificateRecord:
    serial: str  # hex, see serial_hex()
    ca_id: str
    profile: str
    subject: str  # RFC 4514 string
    sans: list[str]  # "DNS:example.com", "IP:10.0.0.1", ...
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes
    fingerprint_sha256: str  # hex
    status: str = "valid"  # "valid" | "revoked" | "hold"
    revocation_reason: int | None = None
    revoked_at: dt.datetime | None = None
    invalidity_date: dt.datetime | None = None
    entity_id: str | None = None
    protocol_config: str | None = None
    request_id: str | None = None
    key_algorithm: str = ""
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class CertificateFilter:
    ca_id: str | None = None
    status: str | None = None
    profile: str | None = None
    entity_id: str | None = None
    protocol_config: str | None = None
    subject_contains: str | None = None
    expires_before: dt.datetime | None = None
    issued_after: dt.datetime | None = None
    san_contains: str | None = None
    expires_after: dt.datetime | None = None
    issued_before: dt.datetime | None = None


@dataclass
class RequestRecord:
    """A certificate request held for operator approval."""

    id: str
    ca_id: str
    profile: str
    csr_pem: str
    overrides: dict[str, Any]  # JSON-safe form of IssueOverrides
    status: str = "pending"  # "pending" | "approved" | "upstream" | "rejected" | "issued"
    entity_id: str | None = None
    protocol_config: str | None = None
    serial: str | None = None
    decided_by: str | None = None
    reason: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    decided_at: dt.datetime | None = None
    upstream_handle: str | None = None  # "upstream": the CA's own id for it, polled


@dataclass
class ProtocolConfigRecord:
    """Binds a protocol to a CA and its profiles under an identifier (2-18 chars)."""

    id: str
    protocol: str  # "acme" | "scep" | "est" | "xcep" | "wstep" | "mdm"
    ca_id: str
    profiles: list[str]
    default_profile: str
    credentials: dict[str, Any]  # hashed or encrypted secrets only, never plaintext
    settings: dict[str, Any]
    enabled: bool = True
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class EndEntityRecord:
    """A device, user or account that requests certificates."""

    id: str
    name: str
    kind: str  # "device" | "user" | "account" | "service"
    status: str = "active"  # "active" | "inactive" | "decommissioned"
    protocol_config: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=utcnow)
    updated_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class EventRecord:
    """One audit event: who asked what of which configuration, and how it ended."""

    type: str  # "issue" | "renew" | "revoke" | "suspend" | "unsuspend" | "approve" | "reject" | ...
    status: str  # "success" | "failure" | "pending"
    entity_id: str | None = None
    protocol_config: str | None = None
    ca_id: str | None = None
    serial: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class EventFilter:
    type: str | None = None
    status: str | None = None
    entity_id: str | None = None
    protocol_config: str | None = None
    ca_id: str | None = None
    serial: str | None = None
    since: dt.datetime | None = None


@dataclass
class DestinationRecord:
    """Where a protocol configuration's certificates are pushed (gateway/distribution.py)."""

    id: str
    protocol_config: str
    url: str
    settings: dict[str, Any]  # auth (secrets sealed), trust_pem, include_chain, include_revocations
    enabled: bool = True
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class OutboxRecord:
    """One delivery owed to a destination, written with what it announces."""

    id: str
    destination_id: str
    event: str  # "issued" | "revoked"
    payload: dict[str, Any]
    serial: str | None = None
    status: str = "pending"  # "pending" | "delivered" | "failed"
    attempts: int = 0
    next_attempt_at: dt.datetime = field(default_factory=utcnow)
    lease_until: dt.datetime | None = None
    last_error: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)
    delivered_at: dt.datetime | None = None


@dataclass
class NotificationHandlerRecord:
    """Who is told about which enrollment events, how (gateway/notifications.py)."""

    id: str
    name: str
    events: list[str]
    conditions: dict[str, Any]
    action: str  # "webhook" | "email"
    settings: dict[str, Any]
    expiring_days: int | None = None
    enabled: bool = True
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass
class ApiKeyRecord:
    """An admin API key (or registered client certificate); only its SHA-256 is stored.

    ``role`` is ``admin`` (every route) or ``auditor`` (reads only); a key past
    ``expires_at`` or ``revoked`` no longer authenticates.
    """

    id: str
    name: str
    key_sha256: str
    created_at: dt.datetime = field(default_factory=utcnow)
    revoked: bool = False
    role: str = "admin"
    expires_at: dt.datetime | None = None

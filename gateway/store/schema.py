"""Table definitions (SQLAlchemy Core) for the records in :mod:`gateway.store.records`.

This is the *current* shape of the database, used to build queries. The database
itself is created and evolved only by the Alembic migrations in ``migrations/``;
``tests/test_store.py`` checks that the two agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from ..columns import NAMING_CONVENTION, AutoId, JSONDoc, UTCDateTime  # noqa: E402 - re-exported

SERIAL_LENGTH = 64  # hex chars; a 159-bit serial needs 40
ID_LENGTH = 64
FINGERPRINT_LENGTH = 64  # SHA-256 hex

metadata = MetaData(naming_convention=NAMING_CONVENTION)

cas = Table(
    "cas",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("parent_id", String(ID_LENGTH), ForeignKey("cas.id"), nullable=True),
    Column("certificate_pem", Text, nullable=True),
    Column("chain_pem", Text, nullable=False),
    Column("key_pem_encrypted", Text, nullable=True),
    Column("key_algorithm", String(32), nullable=False),
    Column("csr_pem", Text, nullable=True),
    Column("ocsp_certificate_pem", Text, nullable=True),
    Column("ocsp_key_pem_encrypted", Text, nullable=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("crl_der", LargeBinary, nullable=True),
    Column("crl_this_update", UTCDateTime, nullable=True),
    Column("crl_next_update", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("backend", String(64), nullable=False, server_default="local"),
    Column("backend_settings", JSONDoc(), nullable=False, server_default="{}"),
)

certificates = Table(
    "certificates",
    metadata,
    # Surrogate key: gives a stable insertion order for "newest first" listings.
    Column("id", AutoId(), primary_key=True, autoincrement=True),
    Column("serial", String(SERIAL_LENGTH), nullable=False),
    Column("ca_id", String(ID_LENGTH), ForeignKey("cas.id"), nullable=False),
    Column("profile", String(128), nullable=False),
    Column("subject", Text, nullable=False),
    Column("sans", JSONDoc(), nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("not_after", UTCDateTime, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("fingerprint_sha256", String(FINGERPRINT_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("revocation_reason", Integer, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("invalidity_date", UTCDateTime, nullable=True),
    Column("entity_id", String(ID_LENGTH), nullable=True),
    Column("protocol_config", String(ID_LENGTH), nullable=True),
    Column("request_id", String(ID_LENGTH), nullable=True),
    Column("key_algorithm", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("serial"),
    UniqueConstraint("fingerprint_sha256"),
    Index(None, "ca_id"),
    Index(None, "status"),
    Index(None, "not_after"),
    Index(None, "entity_id"),
    Index(None, "protocol_config"),
    Index(None, "created_at"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("ca_id", String(ID_LENGTH), ForeignKey("cas.id"), nullable=False),
    Column("profile", String(128), nullable=False),
    Column("csr_pem", Text, nullable=False),
    Column("overrides", JSONDoc(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("entity_id", String(ID_LENGTH), nullable=True),
    Column("protocol_config", String(ID_LENGTH), nullable=True),
    Column("serial", String(SERIAL_LENGTH), nullable=True),
    Column("decided_by", String(255), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("upstream_handle", Text, nullable=True),
    Index(None, "status"),
    Index(None, "ca_id"),
)

protocol_configs = Table(
    "protocol_configs",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("protocol", String(16), nullable=False),
    Column("ca_id", String(ID_LENGTH), ForeignKey("cas.id"), nullable=False),
    Column("profiles", JSONDoc(), nullable=False),
    Column("default_profile", String(128), nullable=False),
    Column("credentials", JSONDoc(), nullable=False),
    Column("settings", JSONDoc(), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "protocol"),
)

end_entities = Table(
    "end_entities",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    # No foreign keys to protocol_configs: deleting a configuration keeps its history.
    Column("protocol_config", String(ID_LENGTH), nullable=True),
    Column("attributes", JSONDoc(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("name", "protocol_config"),
    Index(None, "status"),
    Index(None, "protocol_config"),
)

events = Table(
    "events",
    metadata,
    Column("id", AutoId(), primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("entity_id", String(ID_LENGTH), nullable=True),
    Column("protocol_config", String(ID_LENGTH), nullable=True),
    Column("ca_id", String(ID_LENGTH), nullable=True),
    Column("serial", String(SERIAL_LENGTH), nullable=True),
    Column("request_id", String(ID_LENGTH), nullable=True),
    Column("detail", JSONDoc(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "created_at"),
    Index(None, "entity_id"),
    Index(None, "serial"),
    Index(None, "type"),
)

destinations = Table(
    "destinations",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("protocol_config", String(ID_LENGTH), nullable=False),
    Column("url", Text, nullable=False),
    Column("settings", JSONDoc(), nullable=False),  # auth (secrets sealed), trust, what to send
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "protocol_config"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),  # also the receiver's idempotency key
    Column("destination_id", String(ID_LENGTH), nullable=False),
    Column("event", String(32), nullable=False),  # "issued" | "revoked"
    Column("serial", String(SERIAL_LENGTH), nullable=True),
    Column("payload", JSONDoc(), nullable=False),
    Column("status", String(16), nullable=False),  # "pending" | "delivered" | "failed"
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Index(None, "status", "next_attempt_at"),
)

notification_handlers = Table(
    "notification_handlers",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("events", JSONDoc(), nullable=False),  # "issued" | "pending" | "rejected" | "revoked" | "expiring"
    Column("conditions", JSONDoc(), nullable=False),  # protocol_config, ca, profile, status
    Column("action", String(16), nullable=False),  # "webhook" | "email"
    Column("settings", JSONDoc(), nullable=False),  # the action's target, secrets sealed, templates
    Column("expiring_days", Integer, nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("key_sha256", String(80), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("role", String(16), nullable=False, server_default="admin"),
    Column("expires_at", UTCDateTime, nullable=True),
    UniqueConstraint("key_sha256"),
    UniqueConstraint("name"),
)

generations = Table(
    "generations",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False, server_default="0"),
)
"""Counters bumped in the transaction of each write they guard (``config``: protocol
configurations), so every process can tell its caches are stale with one read."""

job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(96), nullable=False),
    Column("until", UTCDateTime, nullable=False),
)
"""Who runs each cluster-wide scheduled job until when (gateway/leases.py)."""

console_users = Table(
    "console_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("cert_sha256", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=True),
    UniqueConstraint("cert_sha256"),
)
"""Console users: a role and an optional TLS client certificate (SHA-256 of its DER);
the password lives in ``enrollment_credentials`` (protocol ``console``), with its lockout."""

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("username", String(64), ForeignKey("console_users.username", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
"""Console sessions, shared by every worker and replica; the cookie's token is kept hashed."""

enrollment_credentials = Table(
    "enrollment_credentials",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("protocol", String(16), nullable=False),
    # No foreign key to protocol_configs, like end_entities: history outlives a configuration.
    Column("protocol_config", String(ID_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),  # "user" | "shared-secret"
    Column("username", String(64), nullable=True),  # NULL for shared secrets (NULLs never collide)
    Column("secret_hash", String(255), nullable=False),  # gateway.secrets.hash_secret (scrypt)
    Column("label", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("failures", Integer, nullable=False),  # consecutive failed checks since the last success
    Column("locked_until", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
    UniqueConstraint("protocol", "protocol_config", "username"),
    Index(None, "protocol", "protocol_config", "kind"),
)
"""Enrollment credentials of every protocol (:mod:`gateway.credentials`); the failure
counter and lockout live in the row, so they hold across workers and replicas."""

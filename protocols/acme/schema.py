"""The ACME tables (SQLAlchemy Core), kept in their own metadata beside the core's.

The database is created and evolved only by ``migrations/``; the tests compare the
two. Accounts point at the core's end entities by id and orders at certificates by
serial, without foreign keys, so the core can keep its history when rows go away.
Challenges live inside their authorization row as JSON: every read of an
authorization needs them, and they change together with its status.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from gateway.columns import NAMING_CONVENTION, JSONDoc, UTCDateTime

ID = 64
metadata = MetaData(naming_convention=NAMING_CONVENTION)

accounts = Table(
    "acme_accounts",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("config_id", String(ID), nullable=False),
    Column("thumbprint", String(ID), nullable=False),  # RFC 7638, base64url SHA-256
    Column("jwk", JSONDoc(), nullable=False),
    Column("status", String(16), nullable=False),  # valid | deactivated | revoked
    Column("contact", JSONDoc(), nullable=False),
    Column("tos_agreed", Boolean, nullable=False),
    Column("eab_kid", String(ID), nullable=True),
    Column("allowed_identifiers", JSONDoc(), nullable=True),  # copied from the EAB key
    Column("entity_id", String(ID), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("config_id", "thumbprint"),
    Index(None, "entity_id"),
)

eab_keys = Table(
    "acme_eab_keys",
    metadata,
    Column("kid", String(ID), primary_key=True),
    Column("config_id", String(ID), nullable=False),
    Column("hmac_key_encrypted", Text, nullable=False),
    Column("identifiers", JSONDoc(), nullable=True),  # allowed names / IP ranges; null = any
    Column("label", String(255), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("account_id", String(ID), nullable=True),
    Column("bound_at", UTCDateTime, nullable=True),
    Column("revoked", Boolean, nullable=False),
    Index(None, "config_id"),
)

orders = Table(
    "acme_orders",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("config_id", String(ID), nullable=False),
    Column("account_id", String(ID), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("identifiers", JSONDoc(), nullable=False),
    Column("authz_ids", JSONDoc(), nullable=False),
    Column("profile", String(128), nullable=False),
    Column("not_before", UTCDateTime, nullable=True),
    Column("not_after", UTCDateTime, nullable=True),
    Column("error", JSONDoc(), nullable=True),
    Column("serial", String(64), nullable=True),
    Column("request_id", String(ID), nullable=True),  # held for manual approval
    Column("replaces", String(255), nullable=True),  # ARI certID (RFC 9773)
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "account_id", "created_at"),
    Index(None, "serial"),
)

authorizations = Table(
    "acme_authorizations",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("config_id", String(ID), nullable=False),
    Column("account_id", String(ID), nullable=False),
    Column("identifier_type", String(8), nullable=False),
    Column("identifier_value", String(255), nullable=False),
    Column("wildcard", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("challenges", JSONDoc(), nullable=False),
    Column("attempt", String(16), nullable=True),  # the challenge type being validated
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "account_id", "identifier_value"),
)

replacements = Table(
    "acme_replacements",
    metadata,
    # One live replacement order per certificate (RFC 9773 alreadyReplaced).
    Column("serial", String(64), primary_key=True),
    Column("order_id", String(ID), nullable=False),
)

used_nonces = Table(
    "acme_used_nonces",
    metadata,
    Column("nonce", String(ID), primary_key=True),
    Column("expires", UTCDateTime, nullable=False),
    Index(None, "expires"),
)

rate_counters = Table(
    "acme_rate_counters",
    metadata,
    Column("counter_key", String(255), primary_key=True),
    Column("window_no", BigInteger, primary_key=True),  # window number: epoch seconds // period
    Column("count", Integer, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Index(None, "window_end"),
)

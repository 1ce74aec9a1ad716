"""The SCEP adapter's own tables (SQLAlchemy Core); created by ``migrations/scep_0001``.

- ``scep_ra_certificates``: RA identities per configuration (key encrypted at rest like
  CA keys); ``role`` is ``current`` (signs and decrypts), ``next`` (published by
  GetNextCACert during a rollover) or ``retired`` (still decrypts until it expires).
- ``scep_secrets``: hashed static challenges. (Challenge admins were here too; they are
  enrollment credentials of the core now, moved by ``migrations/scep_0003``.)
- ``scep_challenges``: one-time dynamic challenges, by SHA-256 of the value; a challenge
  another protocol handed out may fix the profile (``migrations/scep_0006``).
- ``scep_transactions``: transactionID -> the core request held for approval, or the
  certificate issued, so CertPoll and resent PKCSReqs find it.
- ``scep_generations``: counters bumped in the transaction of every write to what
  workers cache (``tables``: RA certificates and secrets), so each worker and replica
  sees another's change on its next request (created by ``migrations/scep_0002``).
- (``scep_leases``, from ``migrations/scep_0005``, was dropped by ``scep_0007``: the
  Intune revocation sync's lease is the core's now, ``door.take_lease``.)
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text

from gateway.columns import NAMING_CONVENTION, JSONDoc, UTCDateTime

ID_LENGTH = 64
TRANSACTION_ID_LENGTH = 255

metadata = MetaData(naming_convention=NAMING_CONVENTION)

ra_certificates = Table(
    "scep_ra_certificates",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("config_id", String(ID_LENGTH), nullable=False),
    Column("role", String(16), nullable=False),
    Column("certificate_pem", Text, nullable=False),
    Column("chain_pem", Text, nullable=False),
    Column("key_pem_encrypted", Text, nullable=False),
    Column("not_after", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "config_id"),
)

secrets = Table(
    "scep_secrets",
    metadata,
    Column("config_id", String(ID_LENGTH), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

challenges = Table(
    "scep_challenges",
    metadata,
    Column("challenge_sha256", String(64), primary_key=True),
    Column("config_id", String(ID_LENGTH), nullable=False),
    Column("source", String(32), nullable=False),
    Column("issued_by", String(255), nullable=True),
    Column("bound_subject", Text, nullable=True),
    Column("attributes", JSONDoc(), nullable=False),
    Column("profile", String(64), nullable=True),  # migrations/scep_0006: None = the default
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    Column("used_by", String(TRANSACTION_ID_LENGTH), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "config_id"),
    Index(None, "expires_at"),
)

transactions = Table(
    "scep_transactions",
    metadata,
    Column("config_id", String(ID_LENGTH), primary_key=True),
    Column("transaction_id", String(TRANSACTION_ID_LENGTH), primary_key=True),
    Column("message_type", String(8), nullable=False),
    Column("signer_key_sha256", String(64), nullable=False),
    Column("csr_sha256", String(64), nullable=False),
    Column("request_id", String(ID_LENGTH), nullable=True),  # held for approval
    Column("serial", String(64), nullable=True),  # issued
    Column("created_at", UTCDateTime, nullable=False),
)

generations = Table(
    "scep_generations",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False, server_default="0"),
)

TABLES_GENERATION = "tables"
"""The row bumped by writes to ``scep_ra_certificates`` and ``scep_secrets``."""

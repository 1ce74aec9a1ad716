"""EST's own table: which held request answers a client's retried enrollment.

RFC 7030 section 4.2.3 leaves the client stateless: after ``202 Accepted`` it
simply sends the same request again. The gateway remembers, per label and
client, which core request (held for operator approval) a request maps to.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table, UniqueConstraint

from gateway.columns import NAMING_CONVENTION, UTCDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

pending_requests = Table(
    "est_pending_requests",
    metadata,
    Column("request_id", String(64), primary_key=True),  # the core request (requests.id)
    Column("label", String(32), nullable=False),
    Column("client", String(160), nullable=False),  # "basic:<user>", "cert:<sha256>", or both
    Column("request_key", String(64), nullable=False),  # SHA-256 of key + subject + SANs
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("label", "client", "request_key"),
    Index(None, "created_at"),
)

"""The Windows services' own table: when each CEP endpoint's policy last changed.

MS-XCEP answers ``policiesNotChanged`` by comparing the client's ``lastUpdate`` with the
server's ``LastUpdateTime`` (3.1.1). A policy is built from settings, profiles and the
CA certificate, which change through different doors (admin API, profile files, a CA
rollover), so instead of trusting each to bump a time the gateway keeps a digest of
what it last served per (configuration, endpoint) and moves the time when the digest
moves. Replicas race harmlessly: the row is written with the first time a digest was seen.

(The UsernameToken replay table, ``windows_usernametoken_nonces``, is declared beside
its code in :mod:`.wssecurity`; both come from ``migrations/``.)
"""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from gateway.columns import NAMING_CONVENTION, UTCDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

policy_versions = Table(
    "windows_policy_versions",
    metadata,
    Column("config_id", String(64), primary_key=True),
    Column("endpoint", String(32), primary_key=True),  # "username", "certificate", "keybasedrenewal", ...
    Column("digest", String(64), nullable=False),  # SHA-256 of the full policy (xcep.policy_digest)
    Column("updated_at", UTCDateTime, nullable=False),  # LastUpdateTime
)

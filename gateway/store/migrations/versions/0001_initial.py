"""Initial tables: cas, certificates, requests, protocol_configs, end_entities, events, api_keys.

Revision ID: 0001
Revises:
Create Date: 2024-01-01

Types are spelled out here rather than imported from ``schema.py``: a migration is
a frozen record of what it created, while ``schema.py`` moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _auto_id() -> sa.BigInteger:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cas",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("key_pem_encrypted", sa.Text(), nullable=True),
        sa.Column("key_algorithm", sa.String(32), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=True),
        sa.Column("ocsp_certificate_pem", sa.Text(), nullable=True),
        sa.Column("ocsp_key_pem_encrypted", sa.Text(), nullable=True),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("crl_der", sa.LargeBinary(), nullable=True),
        sa.Column("crl_this_update", _ts(), nullable=True),
        sa.Column("crl_next_update", _ts(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cas"),
        sa.ForeignKeyConstraint(["parent_id"], ["cas.id"], name="fk_cas_parent_id_cas"),
    )

    op.create_table(
        "certificates",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(128), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sans", _json(), nullable=False),
        sa.Column("not_before", _ts(), nullable=False),
        sa.Column("not_after", _ts(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revocation_reason", sa.Integer(), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("invalidity_date", _ts(), nullable=True),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("protocol_config", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("key_algorithm", sa.String(32), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("serial", name="uq_certificates_serial"),
        sa.UniqueConstraint("fingerprint_sha256", name="uq_certificates_fingerprint_sha256"),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"], name="fk_certificates_ca_id_cas"),
    )
    for column in ("ca_id", "status", "not_after", "entity_id", "protocol_config", "created_at"):
        op.create_index(f"ix_certificates_{column}", "certificates", [column])

    op.create_table(
        "requests",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("profile", sa.String(128), nullable=False),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.Column("overrides", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("protocol_config", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("decided_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"], name="fk_requests_ca_id_cas"),
    )
    op.create_index("ix_requests_status", "requests", ["status"])
    op.create_index("ix_requests_ca_id", "requests", ["ca_id"])

    op.create_table(
        "protocol_configs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("ca_id", sa.String(64), nullable=False),
        sa.Column("profiles", _json(), nullable=False),
        sa.Column("default_profile", sa.String(128), nullable=False),
        sa.Column("credentials", _json(), nullable=False),
        sa.Column("settings", _json(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_protocol_configs"),
        sa.ForeignKeyConstraint(["ca_id"], ["cas.id"], name="fk_protocol_configs_ca_id_cas"),
    )
    op.create_index("ix_protocol_configs_protocol", "protocol_configs", ["protocol"])

    op.create_table(
        "end_entities",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("protocol_config", sa.String(64), nullable=True),
        sa.Column("attributes", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_end_entities"),
        sa.UniqueConstraint("name", "protocol_config", name="uq_end_entities_name_protocol_config"),
    )
    op.create_index("ix_end_entities_status", "end_entities", ["status"])
    op.create_index("ix_end_entities_protocol_config", "end_entities", ["protocol_config"])

    op.create_table(
        "events",
        sa.Column("id", _auto_id(), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("protocol_config", sa.String(64), nullable=True),
        sa.Column("ca_id", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    for column in ("created_at", "entity_id", "serial", "type"):
        op.create_index(f"ix_events_{column}", "events", [column])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_sha256", sa.String(80), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_sha256", name="uq_api_keys_key_sha256"),
    )


def downgrade() -> None:
    for table in ("api_keys", "events", "end_entities", "protocol_configs", "requests", "certificates", "cas"):
        op.drop_table(table)

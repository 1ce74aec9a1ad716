"""SCEP tables: RA certificates, hashed secrets, one-time challenges, transactions.

Revision ID: scep_0001
Revises: 0001
Create Date: 2026-11-22

A branch of its own off the core's first revision (see protocols/base.py). Types are
spelled out rather than imported from ``schema.py``: a migration is a frozen record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "scep_0001"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("scep",)
depends_on: str | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scep_ra_certificates",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("key_pem_encrypted", sa.Text(), nullable=False),
        sa.Column("not_after", _ts(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scep_ra_certificates"),
    )
    op.create_index("ix_scep_ra_certificates_config_id", "scep_ra_certificates", ["config_id"])
    op.create_table(
        "scep_secrets",
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("config_id", "kind", "name", name="pk_scep_secrets"),
    )
    op.create_table(
        "scep_challenges",
        sa.Column("challenge_sha256", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("issued_by", sa.String(255), nullable=True),
        sa.Column("bound_subject", sa.Text(), nullable=True),
        sa.Column("attributes", _json(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("used_at", _ts(), nullable=True),
        sa.Column("used_by", sa.String(255), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("challenge_sha256", name="pk_scep_challenges"),
    )
    op.create_index("ix_scep_challenges_config_id", "scep_challenges", ["config_id"])
    op.create_index("ix_scep_challenges_expires_at", "scep_challenges", ["expires_at"])
    op.create_table(
        "scep_transactions",
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("transaction_id", sa.String(255), nullable=False),
        sa.Column("message_type", sa.String(8), nullable=False),
        sa.Column("signer_key_sha256", sa.String(64), nullable=False),
        sa.Column("csr_sha256", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("config_id", "transaction_id", name="pk_scep_transactions"),
    )


def downgrade() -> None:
    op.drop_table("scep_transactions")
    op.drop_index("ix_scep_challenges_expires_at", table_name="scep_challenges")
    op.drop_index("ix_scep_challenges_config_id", table_name="scep_challenges")
    op.drop_table("scep_challenges")
    op.drop_table("scep_secrets")
    op.drop_index("ix_scep_ra_certificates_config_id", table_name="scep_ra_certificates")
    op.drop_table("scep_ra_certificates")

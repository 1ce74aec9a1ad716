"""ACME tables: accounts, EAB keys, orders, authorizations, replacements, used nonces, rate counters.

Revision ID: acme_0001
Revises: 0001
Create Date: 2024-06-01

Types are spelled out here rather than imported from ``protocols/acme/schema.py``:
a migration is a frozen record of what it created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "acme_0001"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("acme",)
depends_on: str | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("thumbprint", sa.String(64), nullable=False),
        sa.Column("jwk", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("contact", _json(), nullable=False),
        sa.Column("tos_agreed", sa.Boolean(), nullable=False),
        sa.Column("eab_kid", sa.String(64), nullable=True),
        sa.Column("allowed_identifiers", _json(), nullable=True),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_acme_accounts"),
        sa.UniqueConstraint("config_id", "thumbprint", name="uq_acme_accounts_config_id_thumbprint"),
    )
    op.create_index("ix_acme_accounts_entity_id", "acme_accounts", ["entity_id"])

    op.create_table(
        "acme_eab_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("hmac_key_encrypted", sa.Text(), nullable=False),
        sa.Column("identifiers", _json(), nullable=True),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=True),
        sa.Column("bound_at", _ts(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_acme_eab_keys"),
    )
    op.create_index("ix_acme_eab_keys_config_id", "acme_eab_keys", ["config_id"])

    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires", _ts(), nullable=False),
        sa.Column("identifiers", _json(), nullable=False),
        sa.Column("authz_ids", _json(), nullable=False),
        sa.Column("profile", sa.String(128), nullable=False),
        sa.Column("not_before", _ts(), nullable=True),
        sa.Column("not_after", _ts(), nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("replaces", sa.String(255), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_acme_orders"),
    )
    op.create_index("ix_acme_orders_account_id_created_at", "acme_orders", ["account_id", "created_at"])
    op.create_index("ix_acme_orders_serial", "acme_orders", ["serial"])

    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("identifier_type", sa.String(8), nullable=False),
        sa.Column("identifier_value", sa.String(255), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires", _ts(), nullable=False),
        sa.Column("challenges", _json(), nullable=False),
        sa.Column("attempt", sa.String(16), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_acme_authorizations"),
    )
    op.create_index(
        "ix_acme_authorizations_account_id_identifier_value", "acme_authorizations",
        ["account_id", "identifier_value"],
    )

    op.create_table(
        "acme_replacements",
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_acme_replacements"),
    )

    op.create_table(
        "acme_used_nonces",
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("expires", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name="pk_acme_used_nonces"),
    )
    op.create_index("ix_acme_used_nonces_expires", "acme_used_nonces", ["expires"])

    op.create_table(
        "acme_rate_counters",
        sa.Column("counter_key", sa.String(255), nullable=False),
        sa.Column("window_no", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_end", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("counter_key", "window_no", name="pk_acme_rate_counters"),
    )
    op.create_index("ix_acme_rate_counters_window_end", "acme_rate_counters", ["window_end"])


def downgrade() -> None:
    for table in ("acme_rate_counters", "acme_used_nonces", "acme_replacements", "acme_authorizations",
                  "acme_orders", "acme_eab_keys", "acme_accounts"):
        op.drop_table(table)

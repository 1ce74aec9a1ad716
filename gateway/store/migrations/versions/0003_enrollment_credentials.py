"""Enrollment credentials: users and shared secrets of every protocol in one table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

SCEP challenge admins and static challenges, EST Basic users, and next WS-Security
UsernameToken and MDM credentials: scrypt hashes, scoped to (protocol, configuration),
with the failure counter and lockout in the row so every worker and replica sees them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "enrollment_credentials",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("protocol_config", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("label", sa.String(255), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", _ts(), nullable=True),
        sa.Column("last_used_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_credentials"),
        sa.UniqueConstraint(
            "protocol", "protocol_config", "username",
            name="uq_enrollment_credentials_protocol_protocol_config_username",
        ),
    )
    op.create_index(
        "ix_enrollment_credentials_protocol_protocol_config_kind", "enrollment_credentials",
        ["protocol", "protocol_config", "kind"],
    )


def downgrade() -> None:
    op.drop_index("ix_enrollment_credentials_protocol_protocol_config_kind", "enrollment_credentials")
    op.drop_table("enrollment_credentials")

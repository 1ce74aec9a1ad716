"""Console users and sessions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

``console_users`` holds each console user's role and optional client certificate; the
password is an enrollment credential of protocol ``console`` (scrypt, lockout).
``console_sessions`` holds live sessions by the SHA-256 of their cookie token.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("cert_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("username", name="pk_console_users"),
        sa.UniqueConstraint("cert_sha256", name="uq_console_users_cert_sha256"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_console_sessions"),
        sa.ForeignKeyConstraint(["username"], ["console_users.username"], ondelete="CASCADE",
                                name="fk_console_sessions_username_console_users"),
    )


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("console_users")

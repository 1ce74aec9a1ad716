"""Windows CES: numeric RequestIDs for enrollment requests (``windows_ces_requests``).

Revision ID: windows_0002
Revises: windows_0001
Create Date: 2026-12-02

Types are spelled out rather than imported from ``ces.py``: a migration is a frozen record.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "windows_0002"
down_revision: str | None = "windows_0001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "windows_ces_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(255), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("body_part_id", sa.BigInteger(), nullable=True),
        sa.Column("serial", sa.String(64), nullable=True),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_windows_ces_requests"),
    )
    op.create_index("ix_windows_ces_requests_request_id", "windows_ces_requests", ["request_id"])
    op.create_index("ix_windows_ces_requests_serial", "windows_ces_requests", ["serial"])


def downgrade() -> None:
    op.drop_index("ix_windows_ces_requests_serial", table_name="windows_ces_requests")
    op.drop_index("ix_windows_ces_requests_request_id", table_name="windows_ces_requests")
    op.drop_table("windows_ces_requests")

"""EST: the table mapping a client's retried request to its held core request.

Revision ID: est_0001
Revises: 0001
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "est_0001"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("est",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "est_pending_requests",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("client", sa.String(160), nullable=False),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_est_pending_requests"),
        sa.UniqueConstraint("label", "client", "request_key",
                            name="uq_est_pending_requests_label_client_request_key"),
    )
    op.create_index("ix_est_pending_requests_created_at", "est_pending_requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_est_pending_requests_created_at", table_name="est_pending_requests")
    op.drop_table("est_pending_requests")

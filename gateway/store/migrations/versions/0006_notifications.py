"""Notification handlers, and the cursor of the audit events they have been matched against.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

The cursor is a row of ``generations`` (``notify_events``: the last event id matched),
started at the newest event so that history is not announced when the table appears.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "notification_handlers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.Column("conditions", _json(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("settings", _json(), nullable=False),
        sa.Column("expiring_days", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notification_handlers"),
        sa.UniqueConstraint("name", name="uq_notification_handlers_name"),
    )
    bind = op.get_bind()
    newest = bind.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM events")).scalar() or 0
    generations = sa.table("generations", sa.column("name", sa.String()), sa.column("value", sa.BigInteger()))
    op.bulk_insert(generations, [{"name": "notify_events", "value": int(newest)}])


def downgrade() -> None:
    op.execute("DELETE FROM generations WHERE name = 'notify_events'")
    op.drop_table("notification_handlers")

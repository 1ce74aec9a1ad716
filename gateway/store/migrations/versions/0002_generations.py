"""Generation counters: a number bumped in the transaction of every configuration write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Workers and replicas compare the number with the one their caches were built at, so an
admin edit made anywhere is applied everywhere on the next request (no TTL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    table = op.create_table(
        "generations",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(table, [{"name": "config", "value": 0}])


def downgrade() -> None:
    op.drop_table("generations")

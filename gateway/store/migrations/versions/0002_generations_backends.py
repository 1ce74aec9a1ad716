"""Generation counters; CA backend kinds; requests held by an upstream CA.

Generation counters: a number bumped in the transaction of every configuration write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Workers and replicas compare the number with the one their caches were built at, so an
admin edit made anywhere is applied everywhere on the next request (no TTL).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _json() -> sa.types.TypeEngine:  # type: ignore[type-arg]
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Which backend kind signs for a CA (gateway.ca.kinds) and that kind's settings.
    with op.batch_alter_table("cas") as batch:
        batch.add_column(sa.Column("backend", sa.String(64), nullable=False, server_default="local"))
        batch.add_column(sa.Column("backend_settings", _json(), nullable=False, server_default="{}"))
    # A request an upstream CA holds: its handle there, polled by the core.
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("upstream_handle", sa.Text(), nullable=True))

    table = op.create_table(
        "generations",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.bulk_insert(table, [{"name": "config", "value": 0}])


def downgrade() -> None:
    op.drop_table("generations")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("upstream_handle")
    with op.batch_alter_table("cas") as batch:
        batch.drop_column("backend_settings")
        batch.drop_column("backend")

"""SCEP generation counter: bumped with every RA-certificate or secret write.

Revision ID: scep_0002
Revises: scep_0001
Create Date: 2027-01-10

Workers and replicas cache a configuration's RA keys and secret hashes; each request
reads this counter (in the same round trip as the request's own reads) and drops its
caches when another process changed them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0002"
down_revision: str | None = "scep_0001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    table = op.create_table(
        "scep_generations",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("name", name="pk_scep_generations"),
    )
    op.bulk_insert(table, [{"name": "tables", "value": 0}])


def downgrade() -> None:
    op.drop_table("scep_generations")

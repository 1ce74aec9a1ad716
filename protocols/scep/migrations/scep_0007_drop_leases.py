"""Drop ``scep_leases``: the core's ``job_leases`` (door.take_lease) holds the SCEP jobs' leases now.

Revision ID: scep_0007
Revises: scep_0006
Create Date: 2026-12-03

A lease is at most minutes long and is renewed on every run, so none is carried over:
after the upgrade the first replica to run the Intune revocation sync takes its new lease.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0007"
down_revision: str | None = "scep_0006"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.drop_table("scep_leases")


def downgrade() -> None:
    op.create_table(
        "scep_leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scep_leases"),
    )

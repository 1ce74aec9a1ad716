"""SCEP leases: which process runs a once-per-cluster job, until when.

Revision ID: scep_0005
Revises: scep_0004
Create Date: 2027-02-02

The Intune revocation sync of a configuration must run in one replica (and worker) at a
time: each takes the row named after the job with a compare-and-set on ``expires_at``
and renews it while it keeps the job (dropped by scep_0007: the core's job_leases now).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0005"
down_revision: str | None = "scep_0004"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "scep_leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scep_leases"),
    )


def downgrade() -> None:
    op.drop_table("scep_leases")

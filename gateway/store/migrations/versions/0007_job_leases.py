"""Job leases: which process runs a cluster-wide scheduled job right now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A replica runs a cluster-wide job (upstream polling, CRL refresh, a protocol's job such
as the Intune revocation sync) only while it holds that job's row (compare-and-set on
``holder`` and ``until``); a holder that dies lets its lease run out and another replica
takes the job over (gateway/leases.py). Replaces the SCEP-only ``scep_leases``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(96), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_job_leases"),
    )


def downgrade() -> None:
    op.drop_table("job_leases")

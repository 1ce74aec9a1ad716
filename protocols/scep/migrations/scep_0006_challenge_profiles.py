"""SCEP one-time challenges may name the profile they issue under.

Revision ID: scep_0006
Revises: scep_0005
Create Date: 2027-03-02

A challenge another protocol hands out (the MDM web service's, for a digital ID) fixes the
certificate profile of the enrollment it authorizes; ``NULL`` keeps the configuration's
default profile, as every challenge did before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0006"
down_revision: str | None = "scep_0005"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("scep_challenges") as batch:
        batch.add_column(sa.Column("profile", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scep_challenges") as batch:
        batch.drop_column("profile")

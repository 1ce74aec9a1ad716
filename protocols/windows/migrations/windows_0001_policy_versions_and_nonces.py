"""Windows (MS-XCEP/MS-WSTEP): policy LastUpdateTime per endpoint, UsernameToken nonces.

Revision ID: windows_0001
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "windows_0001"
down_revision: str | None = "0001"
branch_labels: tuple[str, ...] | None = ("windows",)
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "windows_policy_versions",
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("config_id", "endpoint", name="pk_windows_policy_versions"),
    )
    op.create_table(
        "windows_usernametoken_nonces",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("config_id", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_windows_usernametoken_nonces"),
    )
    op.create_index("ix_windows_usernametoken_nonces_expires_at", "windows_usernametoken_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_windows_usernametoken_nonces_expires_at", table_name="windows_usernametoken_nonces")
    op.drop_table("windows_usernametoken_nonces")
    op.drop_table("windows_policy_versions")

"""Admin API keys: roles, expiry and unique names.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Existing keys (and registered client certificates) become ``admin`` with no expiry,
which is what they could do before. Names become unique so ``apikey revoke NAME``
means one key: an older duplicate keeps its name, later ones get ``-<id prefix>``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def _dedupe_names() -> None:
    keys = sa.table("api_keys", sa.column("id", sa.String()), sa.column("name", sa.String()),
                    sa.column("created_at", sa.DateTime()))
    bind = op.get_bind()
    rows = bind.execute(sa.select(keys.c.id, keys.c.name).order_by(keys.c.created_at, keys.c.id)).all()
    taken: set[str] = set()
    for key_id, name in rows:
        new = name
        if new in taken:
            new = f"{name[:200]}-{key_id[:12]}"
            bind.execute(keys.update().where(keys.c.id == key_id).values(name=new))
        taken.add(new)


def upgrade() -> None:
    _dedupe_names()
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="admin"))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint("uq_api_keys_name", ["name"])


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("uq_api_keys_name", type_="unique")
        batch.drop_column("expires_at")
        batch.drop_column("role")

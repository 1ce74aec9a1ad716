"""SCEP challenge admins move from ``scep_secrets`` to the core's ``enrollment_credentials``.

Revision ID: scep_0003
Revises: scep_0002
Depends on: 0003 (creates ``enrollment_credentials``)
Create Date: 2027-01-12

A data migration, in SCEP's branch because the rows are SCEP's. Every
``challenge_admin`` row becomes a ``user`` credential of protocol ``scep`` in the same
configuration, keeping its scrypt hash (nobody re-enters a password) and its creation
time, and is then deleted from ``scep_secrets``, in the migration's transaction. Static
challenges stay where they are (why: ``protocols/scep/admins.py``).

Plain SQL statements (SELECT, INSERT, DELETE); Python only for what SQL cannot do on
both engines: a random credential id, the NFC form of the user name, and the user-name
rule of ``gateway.credentials`` (spelled out here: a migration is a frozen record and
must not follow later changes of the application's code). A row whose name the
credentials cannot hold (1 or more than 64 characters, control characters, spaces at
either end, two names equal after NFC) or whose hash is not a scrypt hash stays in
``scep_secrets``, unused, and is named in a warning: the operator adds that admin again
under a valid name (``gateway scep admin add``). Needs a live connection (the gateway
always migrates online).
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0003"
down_revision: str | None = "scep_0002"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = "0003"

log = logging.getLogger("gateway.scep")

PROTOCOL = "scep"
ADMIN_KIND = "challenge_admin"  # scep_secrets.kind
USER = "user"  # enrollment_credentials.kind
LABEL = "challenge admin"
MOVED_BY = "migration scep_0003"

_secrets = sa.table(
    "scep_secrets",
    sa.column("config_id", sa.String()), sa.column("kind", sa.String()), sa.column("name", sa.String()),
    sa.column("secret_hash", sa.Text()), sa.column("created_at", sa.DateTime(timezone=True)),
)
_credentials = sa.table(
    "enrollment_credentials",
    sa.column("id", sa.String()), sa.column("protocol", sa.String()), sa.column("protocol_config", sa.String()),
    sa.column("kind", sa.String()), sa.column("username", sa.String()), sa.column("secret_hash", sa.String()),
    sa.column("label", sa.String()), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("created_by", sa.String()), sa.column("disabled", sa.Boolean()), sa.column("failures", sa.Integer()),
    sa.column("locked_until", sa.DateTime(timezone=True)), sa.column("last_used_at", sa.DateTime(timezone=True)),
)


def _username(name: str) -> str | None:
    """The stored form of ``name`` under gateway.credentials' rule as of revision 0003, or None."""
    value = unicodedata.normalize("NFC", name)
    if not 2 <= len(value) <= 64 or ":" in value or not value.isprintable() or value != value.strip():
        return None
    return value


def _scrypt(secret_hash: str) -> bool:
    parts = secret_hash.split("$")
    return (len(secret_hash) <= 255 and len(parts) == 6 and parts[0] == "scrypt"
            and all(p.isdigit() for p in parts[1:4]))


def upgrade() -> None:
    bind = op.get_bind()
    s, c = _secrets.c, _credentials.c
    admins = bind.execute(
        sa.select(s.config_id, s.name, s.secret_hash, s.created_at)
        .where(s.kind == ADMIN_KIND).order_by(s.config_id, s.created_at, s.name)
    ).all()
    if not admins:
        return
    taken = {(r.protocol_config, r.username) for r in bind.execute(
        sa.select(c.protocol_config, c.username).where(c.protocol == PROTOCOL, c.username.is_not(None)))}
    moved: list[dict[str, Any]] = []
    kept: list[str] = []
    for row in admins:
        username = _username(row.name)
        if username is None or (row.config_id, username) in taken or not _scrypt(row.secret_hash):
            kept.append(f"{row.config_id}/{row.name!r}")
            continue
        taken.add((row.config_id, username))
        moved.append({
            "id": "cred_" + secrets.token_hex(12), "protocol": PROTOCOL, "protocol_config": row.config_id,
            "kind": USER, "username": username, "secret_hash": row.secret_hash, "label": LABEL,
            "created_at": row.created_at, "created_by": MOVED_BY, "disabled": False, "failures": 0,
            "locked_until": None, "last_used_at": None, "_name": row.name,
        })
    for values in moved:
        name = values.pop("_name")
        bind.execute(_credentials.insert().values(**values))
        bind.execute(sa.delete(_secrets).where(
            s.config_id == values["protocol_config"], s.kind == ADMIN_KIND, s.name == name))
    if kept:
        log.warning("SCEP challenge admins left in scep_secrets, unusable (the name or hash does not fit the "
                    "enrollment credentials): %s; add them again with 'gateway scep admin add'", ", ".join(kept))


def downgrade() -> None:
    """SCEP's users back to ``scep_secrets`` (their lockout state is dropped)."""
    bind = op.get_bind()
    s, c = _secrets.c, _credentials.c
    users = bind.execute(
        sa.select(c.protocol_config, c.username, c.secret_hash, c.created_at)
        .where(c.protocol == PROTOCOL, c.kind == USER)
    ).all()
    for row in users:
        bind.execute(sa.delete(_secrets).where(
            s.config_id == row.protocol_config, s.kind == ADMIN_KIND, s.name == row.username))
        bind.execute(_secrets.insert().values(
            config_id=row.protocol_config, kind=ADMIN_KIND, name=row.username, secret_hash=row.secret_hash,
            created_at=row.created_at))
    bind.execute(sa.delete(_credentials).where(c.protocol == PROTOCOL, c.kind == USER))

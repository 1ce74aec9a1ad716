"""EST: Basic users move from the labels' configuration JSON to the enrollment credentials.

Revision ID: est_0002
Revises: est_0001
Depends on: 0003 (the core's ``enrollment_credentials`` table)
Create Date: 2026-12-03

Until now a label's users were ``credentials["basic"]`` of its protocol configuration,
``[{"username": ..., "password": <scrypt hash>}, ...]``. They become rows of
``enrollment_credentials`` (protocol ``est``, the label as configuration, kind
``user``) with the same hash, so nobody re-enters a password, and leave the JSON.
Each move is audited as :meth:`gateway.credentials.Credentials.import_hash` audits
one (``credential_create``, ``imported``), and the configuration generation is bumped
as for any configuration write.

A user whose name the credential rules refuse (:func:`gateway.door.check_username`:
2-64 printable characters, no ``:``...), or whose hash is not a scrypt hash of
:func:`gateway.secrets.hash_secret`, cannot be moved: it is left in the JSON, where
EST no longer reads it, and named in a warning (the operator adds it again under a
valid name). Of two entries with one name the first counted before; it is the one moved.

Downgrade moves the enabled users back into the JSON (disabled ones stay in the table,
which the previous version does not read).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.columns import JSONDoc, UTCDateTime
from gateway.door import check_username
from gateway.errors import BadRequest

revision: str = "est_0002"
down_revision: str | None = "est_0001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = "0003"

PROTOCOL = "est"
USER = "user"
ACTOR = "migration:est_0002"
log = logging.getLogger("gateway.est")

# The core tables as they are at revision 0003, only the columns used here.
configs = sa.table(
    "protocol_configs", sa.column("id", sa.String()), sa.column("protocol", sa.String()),
    sa.column("credentials", JSONDoc()),
)
credentials = sa.table(
    "enrollment_credentials", sa.column("id", sa.String()), sa.column("protocol", sa.String()),
    sa.column("protocol_config", sa.String()), sa.column("kind", sa.String()), sa.column("username", sa.String()),
    sa.column("secret_hash", sa.String()), sa.column("label", sa.String()), sa.column("created_at", UTCDateTime()),
    sa.column("created_by", sa.String()), sa.column("disabled", sa.Boolean()), sa.column("failures", sa.Integer()),
    sa.column("locked_until", UTCDateTime()), sa.column("last_used_at", UTCDateTime()),
)
events = sa.table(
    "events", sa.column("type", sa.String()), sa.column("status", sa.String()),
    sa.column("protocol_config", sa.String()), sa.column("detail", JSONDoc()), sa.column("created_at", UTCDateTime()),
)
generations = sa.table("generations", sa.column("name", sa.String()), sa.column("value", sa.BigInteger()))


def _is_scrypt_hash(value: Any) -> bool:
    """The shape :func:`gateway.secrets.hash_secret` writes (what ``import_hash`` accepts)."""
    if not isinstance(value, str):
        return False
    parts = value.split("$")
    return len(parts) == 6 and parts[0] == "scrypt" and all(p.isdigit() for p in parts[1:4])


def _movable(entry: Any) -> tuple[str, str] | str:
    """(stored user name, hash) of a JSON entry, or why it cannot be moved."""
    if not isinstance(entry, dict) or not isinstance(entry.get("username"), str):
        return "not a {username, password} entry"
    if not _is_scrypt_hash(entry.get("password")):
        return "its password is not a scrypt hash"
    try:
        return check_username(entry["username"]), entry["password"]
    except BadRequest as exc:
        return exc.detail


def _est_configs(conn: sa.Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute(sa.select(configs.c.id, configs.c.credentials)
                        .where(configs.c.protocol == PROTOCOL).order_by(configs.c.id)).all()
    return [(row.id, row.credentials) for row in rows if isinstance(row.credentials, dict)]


def _bump_generation(conn: sa.Connection) -> None:
    conn.execute(generations.update().where(generations.c.name == "config")
                 .values(value=generations.c.value + 1))


def upgrade() -> None:
    conn = op.get_bind()
    now = dt.datetime.now(dt.timezone.utc)
    changed = False
    for label, doc in _est_configs(conn):
        if "basic" not in doc:
            continue
        entries = doc["basic"]
        if not isinstance(entries, list):
            log.warning("EST label %s: credentials.basic is not a list of users; left as it is", label)
            continue
        existing = set(conn.execute(sa.select(credentials.c.username).where(
            credentials.c.protocol == PROTOCOL, credentials.c.protocol_config == label,
            credentials.c.kind == USER)).scalars())
        kept: list[Any] = []
        for entry in entries:
            movable = _movable(entry)
            if isinstance(movable, str):
                name = entry.get("username") if isinstance(entry, dict) else None
                log.warning("EST label %s: Basic user %r not moved to the enrollment credentials (%s); "
                            "it no longer authenticates: add it again with 'gateway est user add'",
                            label, name, movable)
                kept.append(entry)
                continue
            username, secret_hash = movable
            if username in existing:  # already there, or a later duplicate that never counted
                continue
            existing.add(username)
            credential_id = "cred_" + secrets.token_hex(12)
            conn.execute(credentials.insert().values(
                id=credential_id, protocol=PROTOCOL, protocol_config=label, kind=USER, username=username,
                secret_hash=secret_hash, label=None, created_at=now, created_by=ACTOR, disabled=False,
                failures=0, locked_until=None, last_used_at=None,
            ))
            conn.execute(events.insert().values(
                type="credential_create", status="success", protocol_config=label, created_at=now,
                detail={"protocol": PROTOCOL, "credential_id": credential_id, "kind": USER, "username": username,
                        "actor": ACTOR, "imported": True},
            ))
        rest = {k: v for k, v in doc.items() if k != "basic"}
        if kept:
            rest["basic"] = kept
        conn.execute(configs.update().where(configs.c.id == label).values(credentials=rest))
        changed = True
    if changed:
        _bump_generation(conn)


def downgrade() -> None:
    conn = op.get_bind()
    changed = False
    for label, doc in _est_configs(conn):
        scope = sa.and_(credentials.c.protocol == PROTOCOL, credentials.c.protocol_config == label,
                        credentials.c.kind == USER, credentials.c.disabled.is_(False))
        users = conn.execute(sa.select(credentials.c.id, credentials.c.username, credentials.c.secret_hash)
                             .where(scope).order_by(credentials.c.username)).all()
        if not users:
            continue
        left = doc.get("basic")
        moved: list[Any] = [{"username": u.username, "password": u.secret_hash} for u in users]
        if isinstance(left, list):
            moved.extend(left)  # entries the upgrade could not move, after the valid users
        conn.execute(configs.update().where(configs.c.id == label).values(credentials={**doc, "basic": moved}))
        conn.execute(credentials.delete().where(credentials.c.id.in_([u.id for u in users])))
        changed = True
    if changed:
        _bump_generation(conn)

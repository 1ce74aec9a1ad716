"""SCEP request ids held for approval become URL-safe.

Revision ID: scep_0004
Revises: scep_0003
Create Date: 2027-01-20

A request held for approval was named by the client's transactionID; micromdm's
scepclient (and others) send standard base64, whose ``/`` splits the path of
``POST /admin/requests/<id>/approve`` (404). New ids are URL-safe
(``protocols.scep.service.request_id_for``); this data migration renames the ids
already stored the same way: ``+`` to ``-``, ``/`` to ``_``, trailing ``=`` dropped,
or ``scep-`` and a SHA-256 prefix when that is still not URL-safe or is taken. The
rename covers the request (``requests.id``), the transaction that points at it
(``scep_transactions.request_id``) and the certificate issued from it
(``certificates.request_id``), in the migration's transaction; audit events keep the id
they were written with. Only requests of SCEP configurations are touched. The rule is
spelled out here, not imported: a migration is a frozen record.
"""

from __future__ import annotations

import hashlib
import logging
import re

import sqlalchemy as sa
from alembic import op

revision: str = "scep_0004"
down_revision: str | None = "scep_0003"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None

log = logging.getLogger("gateway.scep")

MAX_ID = 64
_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*[A-Za-z0-9][A-Za-z0-9._~-]*")

_requests = sa.table("requests", sa.column("id", sa.String()), sa.column("protocol_config", sa.String()))
_configs = sa.table("protocol_configs", sa.column("id", sa.String()), sa.column("protocol", sa.String()))
_transactions = sa.table("scep_transactions", sa.column("request_id", sa.String()))
_certificates = sa.table("certificates", sa.column("request_id", sa.String()),
                         sa.column("protocol_config", sa.String()))


def _renamed(old: str, taken: set[str]) -> str:
    url_safe = old.replace("+", "-").replace("/", "_").rstrip("=")
    if len(url_safe) <= MAX_ID and _URL_SAFE.fullmatch(url_safe) and url_safe not in taken:
        return url_safe
    return "scep-" + hashlib.sha256(old.encode()).hexdigest()[:40]


def upgrade() -> None:
    bind = op.get_bind()
    r, p = _requests.c, _configs.c
    rows = bind.execute(sa.select(r.id).where(r.protocol_config.in_(
        sa.select(p.id).where(p.protocol == "scep")))).scalars().all()
    taken = set(bind.execute(sa.select(r.id)).scalars().all())
    moved = 0
    for old in rows:
        if _URL_SAFE.fullmatch(old):
            continue
        new = _renamed(old, taken)
        taken.add(new)
        bind.execute(sa.update(_requests).where(r.id == old).values(id=new))
        bind.execute(sa.update(_transactions).where(_transactions.c.request_id == old).values(request_id=new))
        bind.execute(sa.update(_certificates).where(_certificates.c.request_id == old).values(request_id=new))
        moved += 1
    if moved:
        log.warning("renamed %d SCEP request id(s) held for approval to URL-safe ids", moved)


def downgrade() -> None:
    """The old ids are not kept; URL-safe ids stay valid for older code."""

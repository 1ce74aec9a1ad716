"""The ``certificates`` table: every certificate issued, by serial, with its status.

Serials are stored canonical (lowercase hex, no leading zeros) and looked up in any
spelling a client may use; status changes are compare-and-set, so two revocations
racing for one certificate have one winner.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Text, and_, bindparam, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from ...errors import NotFound
from .. import schema as t
from ..direct_reads import PreparedRead
from ..errors import StoreError, translated
from ..records import CertificateFilter, CertificateRecord, utcnow
from .base import TableQueries, normalize_fingerprint, normalize_serial, page, record, values_of

STATUSES = frozenset({"valid", "revoked", "hold"})

Certificates = list[CertificateRecord]
DirectCounts = list[tuple[str, str | None, str | None, int]]  # (ca_id, event type, actor, count)

_c = t.certificates.c
# every enrollment inserts one, and every status or OCSP request reads one by serial
_INSERT = t.certificates.insert()
_BY_SERIAL = select(t.certificates).where(_c.serial == bindparam("serial"))
PREPARED_BY_SERIAL = PreparedRead(_BY_SERIAL)  # every ACME download, OCSP and status lookup
_BY_FINGERPRINT = select(t.certificates).where(_c.fingerprint_sha256 == bindparam("fingerprint"))

_e = t.events.c
_ACTOR = _e.detail["actor"].as_string()
# Certificates outside any configuration (indexed: few beside the protocols' own), each
# with its issuance event (by serial, indexed) for who issued it; read at each scrape.
_OUTSIDE_CONFIGURATIONS = (
    select(_c.ca_id, _e.type, _ACTOR, func.count())
    .select_from(t.certificates.outerjoin(t.events, and_(
        _e.serial == _c.serial, _e.type.in_(("issue", "internal_issue")), _e.status == "success",
    )))
    .where(_c.protocol_config.is_(None))
    .group_by(_c.ca_id, _e.type, _ACTOR)
)


def _conditions(flt: CertificateFilter | None) -> list[ColumnElement[bool]]:
    if flt is None:
        return []
    conds: list[ColumnElement[bool]] = []
    if flt.ca_id is not None:
        conds.append(_c.ca_id == flt.ca_id)
    if flt.status is not None:
        conds.append(_c.status == flt.status)
    if flt.profile is not None:
        conds.append(_c.profile == flt.profile)
    if flt.entity_id is not None:
        conds.append(_c.entity_id == flt.entity_id)
    if flt.protocol_config is not None:
        conds.append(_c.protocol_config == flt.protocol_config)
    if flt.subject_contains:
        conds.append(func.lower(_c.subject).contains(flt.subject_contains.lower(), autoescape=True))
    if flt.expires_before is not None:
        conds.append(_c.not_after < flt.expires_before)
    if flt.issued_after is not None:
        conds.append(_c.created_at >= flt.issued_after)
    if flt.san_contains:  # the SANs' JSON text: DNS names, IPs, e-mail addresses, URIs
        conds.append(func.lower(cast(_c.sans, Text)).contains(flt.san_contains.lower(), autoescape=True))
    if flt.expires_after is not None:
        conds.append(_c.not_after >= flt.expires_after)
    if flt.issued_before is not None:
        conds.append(_c.created_at < flt.issued_before)
    return conds


class CertificateQueries(TableQueries):
    __slots__ = ()

    async def insert(self, rec: CertificateRecord) -> None:
        """SerialCollision if the serial is taken (the savepoint keeps the transaction usable)."""
        values = values_of(rec)
        values["serial"] = normalize_serial(rec.serial)
        values["fingerprint_sha256"] = normalize_fingerprint(rec.fingerprint_sha256)
        if values["status"] not in STATUSES:
            raise StoreError(f"unknown certificate status {rec.status!r}")
        await self._insert(_INSERT, values, f"certificate {values['serial']}", serial=values["serial"])

    async def get(self, serial: str) -> CertificateRecord | None:
        """By hex serial in any spelling (case, leading zeros, colons); BadRequest if not hex."""
        return await self._one(CertificateRecord, _BY_SERIAL, "certificate", {"serial": normalize_serial(serial)})

    async def by_fingerprint(self, sha256_hex: str) -> CertificateRecord | None:
        return await self._one(CertificateRecord, _BY_FINGERPRINT, "certificate",
                               {"fingerprint": normalize_fingerprint(sha256_hex)})

    async def list(self, flt: CertificateFilter | None = None, limit: int = 100, offset: int = 0) -> Certificates:
        """Newest first (by creation time, then insertion order)."""
        limit, offset = page(limit, offset)
        stmt = (
            select(t.certificates).where(*_conditions(flt))
            .order_by(_c.created_at.desc(), _c.id.desc()).limit(limit).offset(offset)
        )
        return await self._all(CertificateRecord, stmt, "certificates")

    async def expiring_page(self, flt: CertificateFilter, after: tuple[dt.datetime, str] | None,
                            limit: int) -> Certificates:
        """Soonest to expire first, a page past ``after`` (the last page's final ``(not_after,
        serial)``): keyset paging, so a certificate revoked meanwhile shifts nothing."""
        conds = _conditions(flt)
        if after is not None:
            conds.append((_c.not_after > after[0]) | ((_c.not_after == after[0]) & (_c.serial > after[1])))
        stmt = select(t.certificates).where(*conds).order_by(_c.not_after, _c.serial).limit(limit)
        return await self._all(CertificateRecord, stmt, "certificates")

    async def count(self, flt: CertificateFilter | None = None) -> int:
        stmt = select(func.count()).select_from(t.certificates).where(*_conditions(flt))
        with translated("certificates"):
            return int((await self._conn.execute(stmt)).scalar_one())

    async def outside_configurations(self) -> DirectCounts:
        """Certificates issued outside any protocol configuration, counted by CA, issuance
        event type and actor (both None when the event is missing): what every process
        of every replica reads alike, so a ``gateway cert issue`` shows on any scrape."""
        with translated("certificates"):
            rows = (await self._conn.execute(_OUTSIDE_CONFIGURATIONS)).all()
        return [(str(r[0]), r[1], r[2], int(r[3])) for r in rows]

    async def update_status(
        self, serial: str, *, expect: set[str], status: str, reason: int | None,
        revoked_at: dt.datetime | None, invalidity_date: dt.datetime | None,
    ) -> CertificateRecord | None:
        """Compare-and-set: change status only if the current one is in ``expect``.

        Returns the updated record, or None when the current status did not match
        (the caller decides which Conflict to raise). NotFound if no such serial.
        """
        canonical = normalize_serial(serial)
        if status not in STATUSES or not expect or not set(expect) <= STATUSES:
            raise StoreError("unknown certificate status in status change")
        stmt = (
            t.certificates.update()
            .where(_c.serial == canonical, _c.status.in_(sorted(expect)))
            .values(status=status, revocation_reason=reason, revoked_at=revoked_at,
                    invalidity_date=invalidity_date)
            .returning(*t.certificates.c)
        )
        what = f"certificate {canonical}"
        with translated(what):
            row = (await self._conn.execute(stmt)).first()
        if row is not None:
            return record(CertificateRecord, row)
        if not await self._exists(t.certificates, _c.serial == canonical, what):
            raise NotFound(f"{what} not found")
        return None

    async def live_for_entity(self, entity_id: str, now: dt.datetime) -> Certificates:
        """An end entity's certificates still in force (valid or on hold, not expired):
        what decommissioning it revokes, oldest first."""
        stmt = (
            select(t.certificates)
            .where(_c.entity_id == entity_id, _c.status.in_(("valid", "hold")), _c.not_after > now)
            .order_by(_c.created_at, _c.id)
        )
        return await self._all(CertificateRecord, stmt, "certificates")

    async def revoked(self, ca_id: str, include_expired: bool = True) -> Certificates:
        """Certificates a CRL must list: revoked or on hold."""
        conds = [_c.ca_id == ca_id, _c.status.in_(("revoked", "hold"))]
        if not include_expired:
            conds.append(_c.not_after >= utcnow())
        stmt = select(t.certificates).where(*conds).order_by(_c.revoked_at, _c.id)
        return await self._all(CertificateRecord, stmt, "certificates")

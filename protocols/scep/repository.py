"""Data access for the SCEP tables, on connections of the door's :attr:`~gateway.door.Door.tables`.

Writes run in one transaction of the adapter's tables (BEGIN IMMEDIATE on SQLite, so
concurrent writers queue); state changes that must happen once (using a one-time
challenge, promoting an RA) are compare-and-set statements.

What workers cache (RA certificates, secret hashes) is guarded by a generation row in
``scep_generations``, bumped in the transaction of every such write: a worker reads it
once per request (:meth:`ScepRepository.generation_in`) and serves its caches only while
it is unchanged, so another worker's or replica's write is seen on the next request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.door import utcnow
from gateway.errors import Conflict

from . import schema as t

R = TypeVar("R")


class Tables(Protocol):
    """Connections on the adapter's own tables (:class:`gateway.door.ProtocolTables`)."""

    def read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...


RA_ROLES = ("current", "next", "retired")


@dataclass(frozen=True)
class RaRecord:
    id: str
    config_id: str
    role: str
    certificate_pem: str
    chain_pem: str
    key_pem_encrypted: str
    not_after: dt.datetime
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class SecretRecord:
    config_id: str
    kind: str  # "static_challenge" (challenge admins are enrollment credentials: admins.py)
    name: str
    secret_hash: str
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class ChallengeRecord:
    challenge_sha256: str
    config_id: str
    source: str  # "ndes" | "api" | "cli" | "webhook" | another protocol ("mdm")
    expires_at: dt.datetime
    issued_by: str | None = None
    bound_subject: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None  # the profile the enrollment is issued under (None: the default)
    used_at: dt.datetime | None = None
    used_by: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class TransactionRecord:
    config_id: str
    transaction_id: str
    message_type: str
    signer_key_sha256: str
    csr_sha256: str
    request_id: str | None = None
    serial: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)

    @property
    def in_progress(self) -> bool:
        """A claim (:meth:`ScepRepository.claim_transaction`): a request with this
        transactionID is being enrolled right now, by this or another process."""
        return self.request_id is None and self.serial is None


def _values(rec: Any) -> dict[str, Any]:
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}


def _record(cls: type[R], row: Any) -> R:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _is(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _same_row(rec: TransactionRecord) -> Any:
    """The transactions row exactly as ``rec`` holds it (what a compare-and-set compares)."""
    c = t.transactions.c
    return and_(
        c.config_id == rec.config_id, c.transaction_id == rec.transaction_id,
        c.csr_sha256 == rec.csr_sha256, c.signer_key_sha256 == rec.signer_key_sha256,
        c.created_at == rec.created_at, _is(c.request_id, rec.request_id), _is(c.serial, rec.serial),
    )


class ScepRepository:
    """The SCEP tables."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._observed: int | None = None  # the tables' generation as this request read it
        self._secrets: dict[tuple[str, str], tuple[int, list[SecretRecord]]] = {}

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._tables.transaction()

    def _read(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self._tables.read()

    @staticmethod
    async def _changed(conn: AsyncConnection) -> None:
        """Bump the generation in the transaction of a write to what workers cache (RA
        certificates, secrets): it commits, or rolls back, with that write."""
        c = t.generations.c
        await conn.execute(update(t.generations).where(c.name == t.TABLES_GENERATION).values(value=c.value + 1))

    # --- generation -----------------------------------------------------------------------
    async def generation_in(self, conn: AsyncConnection) -> int:
        """The tables' generation, read on ``conn`` (the caller's per-request read); the
        caches of this repository (:meth:`cached_secrets`) are keyed by the value last read."""
        c = t.generations.c
        value = (await conn.execute(select(c.value).where(c.name == t.TABLES_GENERATION))).scalar()
        self._observed = int(value or 0)
        return self._observed

    async def generation(self) -> int:
        async with self._read() as conn:
            return await self.generation_in(conn)

    # --- RA certificates ---------------------------------------------------------------
    async def ra_certificates(self, config_id: str) -> list[RaRecord]:
        c = t.ra_certificates.c
        stmt = select(t.ra_certificates).where(c.config_id == config_id).order_by(c.created_at.desc(), c.id)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(RaRecord, r) for r in rows]

    async def add_ra(self, rec: RaRecord) -> None:
        """Insert an RA identity; a new ``current`` retires the previous current one, a new
        ``next`` replaces a previous next (both in the same transaction)."""
        if rec.role not in RA_ROLES:
            raise ValueError(f"unknown RA role {rec.role!r}")
        c = t.ra_certificates.c
        async with self._write() as conn:
            if rec.role == "current":
                await conn.execute(
                    update(t.ra_certificates)
                    .where(c.config_id == rec.config_id, c.role == "current").values(role="retired")
                )
            elif rec.role == "next":
                await conn.execute(
                    delete(t.ra_certificates).where(c.config_id == rec.config_id, c.role == "next")
                )
            await conn.execute(t.ra_certificates.insert().values(**_values(rec)))
            await self._changed(conn)

    async def promote_next_ra(self, config_id: str) -> bool:
        """Rollover: the ``next`` RA becomes ``current``, the old current retires."""
        c = t.ra_certificates.c
        async with self._write() as conn:
            row = (await conn.execute(
                select(c.id).where(c.config_id == config_id, c.role == "next")
            )).first()
            if row is None:
                return False
            await self._changed(conn)
            await conn.execute(
                update(t.ra_certificates).where(c.config_id == config_id, c.role == "current").values(role="retired")
            )
            await conn.execute(update(t.ra_certificates).where(c.id == row.id).values(role="current"))
        return True

    async def drop_expired_ra(self, config_id: str, now: dt.datetime) -> int:
        c = t.ra_certificates.c
        async with self._write() as conn:
            result = await conn.execute(
                delete(t.ra_certificates).where(c.config_id == config_id, c.role == "retired", c.not_after < now)
            )
            if result.rowcount:
                await self._changed(conn)
        return int(result.rowcount or 0)

    # --- secrets -------------------------------------------------------------------------
    async def set_secret(self, rec: SecretRecord) -> None:
        c = t.secrets.c
        async with self._write() as conn:
            await conn.execute(delete(t.secrets).where(
                c.config_id == rec.config_id, c.kind == rec.kind, c.name == rec.name))
            await conn.execute(t.secrets.insert().values(**_values(rec)))
            await self._changed(conn)

    async def cached_secrets(self, config_id: str, kind: str) -> list[SecretRecord]:
        """:meth:`secrets` served from memory while the generation read for this request
        (:meth:`generation_in`) is the one they were read under (hot path: the static
        challenge of every PKCSReq). Read afresh when no generation was read yet."""
        gen = self._observed
        entry = self._secrets.get((config_id, kind))
        if gen is not None and entry is not None and entry[0] == gen:
            return entry[1]
        records = await self.secrets(config_id, kind)
        if gen is not None:
            if len(self._secrets) > 1000:
                self._secrets.clear()
            self._secrets[(config_id, kind)] = (gen, records)
        return records

    def forget(self) -> None:
        """Drop what is cached (the app is stopping)."""
        self._secrets.clear()
        self._observed = None

    async def secrets(self, config_id: str, kind: str) -> list[SecretRecord]:
        c = t.secrets.c
        stmt = select(t.secrets).where(c.config_id == config_id, c.kind == kind).order_by(c.name)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(SecretRecord, r) for r in rows]

    async def delete_secret(self, config_id: str, kind: str, name: str) -> bool:
        c = t.secrets.c
        async with self._write() as conn:
            result = await conn.execute(delete(t.secrets).where(
                c.config_id == config_id, c.kind == kind, c.name == name))
            if result.rowcount:
                await self._changed(conn)
        return bool(result.rowcount)

    # --- dynamic challenges -------------------------------------------------------------
    async def add_challenge(self, rec: ChallengeRecord, *, limit: int, now: dt.datetime) -> None:
        """Store a new challenge unless ``limit`` usable ones are already outstanding."""
        c = t.challenges.c
        async with self._write() as conn:
            # expired or used challenges older than a day are of no further use
            await conn.execute(delete(t.challenges).where(c.expires_at < now - dt.timedelta(days=1)))
            outstanding = (await conn.execute(
                select(func.count()).select_from(t.challenges).where(
                    c.config_id == rec.config_id, c.used_at.is_(None), c.expires_at > now)
            )).scalar_one()
            if outstanding >= limit:
                raise Conflict("the challenge password cache is full; wait for passwords to be used or expire")
            try:
                await conn.execute(t.challenges.insert().values(**_values(rec)))
            except IntegrityError:
                raise Conflict("challenge collision; try again") from None

    async def challenge(self, config_id: str, challenge_sha256: str) -> ChallengeRecord | None:
        c = t.challenges.c
        stmt = select(t.challenges).where(c.config_id == config_id, c.challenge_sha256 == challenge_sha256)
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else _record(ChallengeRecord, row)

    async def use_challenge(self, config_id: str, challenge_sha256: str, *, now: dt.datetime, used_by: str) -> bool:
        """Compare-and-set: mark an unused, unexpired challenge used; False otherwise."""
        c = t.challenges.c
        async with self._write() as conn:
            result = await conn.execute(
                update(t.challenges)
                .where(and_(c.config_id == config_id, c.challenge_sha256 == challenge_sha256,
                            c.used_at.is_(None), c.expires_at > now))
                .values(used_at=now, used_by=used_by)
            )
        return result.rowcount == 1

    async def release_challenge(self, config_id: str, challenge_sha256: str, used_by: str) -> None:
        """Undo :meth:`use_challenge` when the enrollment it authorized failed on bad input."""
        c = t.challenges.c
        async with self._write() as conn:
            await conn.execute(
                update(t.challenges)
                .where(c.config_id == config_id, c.challenge_sha256 == challenge_sha256, c.used_by == used_by)
                .values(used_at=None, used_by=None)
            )

    async def list_challenges(self, config_id: str, now: dt.datetime) -> list[ChallengeRecord]:
        """Outstanding (unused, unexpired) challenges, newest first."""
        c = t.challenges.c
        stmt = (select(t.challenges)
                .where(c.config_id == config_id, c.used_at.is_(None), c.expires_at > now)
                .order_by(c.created_at.desc()))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(ChallengeRecord, r) for r in rows]

    # --- transactions ------------------------------------------------------------------
    async def transaction(self, config_id: str, transaction_id: str) -> TransactionRecord | None:
        async with self._read() as conn:
            return await self.transaction_in(conn, config_id, transaction_id)

    @staticmethod
    async def transaction_in(conn: AsyncConnection, config_id: str, transaction_id: str) -> TransactionRecord | None:
        """:meth:`transaction` on the caller's connection."""
        c = t.transactions.c
        stmt = select(t.transactions).where(c.config_id == config_id, c.transaction_id == transaction_id)
        row = (await conn.execute(stmt)).first()
        return None if row is None else _record(TransactionRecord, row)

    async def save_transaction(self, rec: TransactionRecord) -> None:
        """Remember (or replace) what a transactionID led to."""
        async with self._write() as conn:
            await self.save_transaction_in(conn, rec)

    @staticmethod
    async def save_transaction_in(conn: AsyncConnection, rec: TransactionRecord) -> None:
        """:meth:`save_transaction` on the caller's connection (the certificate's own
        transaction, so the transactionID and its certificate commit together)."""
        c = t.transactions.c
        await conn.execute(delete(t.transactions).where(
            c.config_id == rec.config_id, c.transaction_id == rec.transaction_id))
        await conn.execute(t.transactions.insert(), _values(rec))

    async def claim_transaction(self, claim: TransactionRecord, previous: TransactionRecord | None) -> bool:
        """Take the transactionID for one enrollment before anything is issued, so that a
        concurrent copy of the same request (from any worker or replica) cannot issue a
        second certificate (RFC 8894 section 4.7). ``claim`` is :attr:`in_progress`;
        inserted when ``previous`` is None, else compare-and-set over the row exactly as
        ``previous`` read it. False when another request took it first."""
        try:
            async with self._write() as conn:
                if previous is None:
                    await conn.execute(t.transactions.insert(), _values(claim))
                    return True
                result = await conn.execute(
                    update(t.transactions).where(_same_row(previous)).values(
                        **{k: v for k, v in _values(claim).items() if k not in ("config_id", "transaction_id")})
                )
                return result.rowcount == 1
        except (IntegrityError, Conflict):  # the row was inserted by another request meanwhile
            return False

    @staticmethod
    async def settle_transaction_in(conn: AsyncConnection, claim: TransactionRecord, *,
                                    request_id: str | None = None, serial: str | None = None) -> None:
        """Turn our claim into what the enrollment led to, on the caller's connection (the
        certificate's own transaction); raises :class:`Conflict` when the claim is no longer
        ours (it went stale and another request took it over), which rolls the
        certificate back."""
        result = await conn.execute(
            update(t.transactions).where(_same_row(claim)).values(request_id=request_id, serial=serial))
        if result.rowcount != 1:
            raise Conflict("this transactionID was taken over by another request")

    async def settle_transaction(self, claim: TransactionRecord, *, request_id: str | None = None,
                                 serial: str | None = None) -> None:
        async with self._write() as conn:
            await self.settle_transaction_in(conn, claim, request_id=request_id, serial=serial)

    async def release_transaction(self, claim: TransactionRecord, previous: TransactionRecord | None) -> None:
        """Undo :meth:`claim_transaction` after a refused enrollment: the row is what it
        was before (or gone), so a resend is served afresh. No-op when no longer ours."""
        async with self._write() as conn:
            if previous is None or previous.in_progress:
                await conn.execute(delete(t.transactions).where(_same_row(claim)))
            else:
                await conn.execute(update(t.transactions).where(_same_row(claim)).values(
                    **{k: v for k, v in _values(previous).items() if k not in ("config_id", "transaction_id")}))

    async def set_transaction_serial(self, config_id: str, transaction_id: str, serial: str) -> None:
        c = t.transactions.c
        async with self._write() as conn:
            await conn.execute(update(t.transactions).where(
                c.config_id == config_id, c.transaction_id == transaction_id).values(serial=serial))

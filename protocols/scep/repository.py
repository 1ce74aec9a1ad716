"""Data access for the SCEP tables, through the core Store's engine and transactions.

Writes go through :meth:`gateway.store.Store.transaction` (BEGIN IMMEDIATE on SQLite,
so concurrent writers queue); state changes that must happen once (using a one-time
challenge, promoting an RA) are compare-and-set statements.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import Conflict, ErrorKind
from gateway.store import Store
from gateway.store.records import utcnow
from gateway.store.store import StoreError

from . import schema as t

log = logging.getLogger(__name__)

SECRETS_TTL = 1.0  # seconds a configuration's secret hashes are served from memory
_generation = 0  # bumped by every RA certificate or secret write in this process


def generation() -> int:
    """Changes whenever this process writes RA certificates or secrets (any repository
    instance), so per-configuration caches drop stale entries at once; writes made
    by other processes are picked up within the caches' TTL."""
    return _generation


def _changed() -> None:
    global _generation
    _generation += 1
R = TypeVar("R")

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
    kind: str  # "static_challenge" | "challenge_admin"
    name: str
    secret_hash: str
    created_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class ChallengeRecord:
    challenge_sha256: str
    config_id: str
    source: str  # "ndes" | "api" | "cli" | "webhook"
    expires_at: dt.datetime
    issued_by: str | None = None
    bound_subject: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
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


def _values(rec: Any) -> dict[str, Any]:
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec)}


def _record(cls: type[R], row: Any) -> R:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


class ScepRepository:
    """The SCEP tables of one Store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._secrets: dict[tuple[str, str], tuple[float, int, list[SecretRecord]]] = {}

    @contextlib.asynccontextmanager
    async def _write(self, changes_cached: bool = False) -> AsyncIterator[AsyncConnection]:
        """``changes_cached``: RA certificates or secrets, which per-configuration caches hold."""
        try:
            async with self._store.transaction() as tx:
                yield tx.connection  # the Store's own transaction (one unit of work)
        finally:
            if changes_cached:
                _changed()

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._store.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            log.warning("SCEP store read failed: %s", type(exc).__name__)
            raise StoreError("database error", kind=ErrorKind.UNAVAILABLE) from exc

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
        async with self._write(changes_cached=True) as conn:
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

    async def promote_next_ra(self, config_id: str) -> bool:
        """Rollover: the ``next`` RA becomes ``current``, the old current retires."""
        c = t.ra_certificates.c
        async with self._write(changes_cached=True) as conn:
            row = (await conn.execute(
                select(c.id).where(c.config_id == config_id, c.role == "next")
            )).first()
            if row is None:
                return False
            await conn.execute(
                update(t.ra_certificates).where(c.config_id == config_id, c.role == "current").values(role="retired")
            )
            await conn.execute(update(t.ra_certificates).where(c.id == row.id).values(role="current"))
        return True

    async def drop_expired_ra(self, config_id: str, now: dt.datetime) -> int:
        c = t.ra_certificates.c
        async with self._write(changes_cached=True) as conn:
            result = await conn.execute(
                delete(t.ra_certificates).where(c.config_id == config_id, c.role == "retired", c.not_after < now)
            )
        return int(result.rowcount or 0)

    # --- secrets -------------------------------------------------------------------------
    async def set_secret(self, rec: SecretRecord) -> None:
        c = t.secrets.c
        async with self._write(changes_cached=True) as conn:
            await conn.execute(delete(t.secrets).where(
                c.config_id == rec.config_id, c.kind == rec.kind, c.name == rec.name))
            await conn.execute(t.secrets.insert().values(**_values(rec)))

    async def cached_secrets(self, config_id: str, kind: str) -> list[SecretRecord]:
        """:meth:`secrets` served from memory for up to ``SECRETS_TTL`` (hot path: the
        static challenge of every PKCSReq); dropped at once on this process's writes."""
        now = time.monotonic()
        entry = self._secrets.get((config_id, kind))
        if entry is not None and entry[0] > now and entry[1] == _generation:
            return entry[2]
        gen = _generation
        records = await self.secrets(config_id, kind)
        if len(self._secrets) > 1000:
            self._secrets.clear()
        self._secrets[(config_id, kind)] = (now + SECRETS_TTL, gen, records)
        return records

    async def secrets(self, config_id: str, kind: str) -> list[SecretRecord]:
        c = t.secrets.c
        stmt = select(t.secrets).where(c.config_id == config_id, c.kind == kind).order_by(c.name)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(SecretRecord, r) for r in rows]

    async def delete_secret(self, config_id: str, kind: str, name: str) -> bool:
        c = t.secrets.c
        async with self._write(changes_cached=True) as conn:
            result = await conn.execute(delete(t.secrets).where(
                c.config_id == config_id, c.kind == kind, c.name == name))
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
        c = t.transactions.c
        stmt = select(t.transactions).where(c.config_id == config_id, c.transaction_id == transaction_id)
        async with self._read() as conn:
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

    async def set_transaction_serial(self, config_id: str, transaction_id: str, serial: str) -> None:
        c = t.transactions.c
        async with self._write() as conn:
            await conn.execute(update(t.transactions).where(
                c.config_id == config_id, c.transaction_id == transaction_id).values(serial=serial))

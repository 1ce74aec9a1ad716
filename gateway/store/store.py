"""The gateway's one async store: embedded SQLite (default) or PostgreSQL.

SQLAlchemy Core over ``aiosqlite`` or ``asyncpg``. The schema is created and
upgraded by Alembic at :meth:`Store.open`. Every method on :class:`Store` runs in
its own transaction; :meth:`Store.transaction` hands out a :class:`Tx` carrying the
same methods so callers can group writes (issue a certificate *and* mark its
request issued) into one all-or-nothing unit.

Errors: unique-serial violations raise :class:`SerialCollision`, other unique or
foreign-key violations raise :class:`gateway.errors.Conflict`, everything else
from the database becomes a :class:`StoreError`. Details never carry SQL.
"""

from __future__ import annotations

import contextlib
import os
import dataclasses
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Select, Table, event, func, select, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from ..errors import BadRequest, ConfigError, Conflict, ErrorKind, GatewayError, NotFound
from . import schema as t
from . import sqlite_driver
from .records import (
    ApiKeyRecord,
    CARecord,
    CertificateFilter,
    CertificateRecord,
    EndEntityRecord,
    EventFilter,
    EventRecord,
    ProtocolConfigRecord,
    RequestRecord,
    serial_hex,
    utcnow,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Rec = TypeVar("Rec")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
CERT_STATUSES = frozenset({"valid", "revoked", "hold"})
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK_KEY = 0x6761_7465_7761_79  # arbitrary, "gateway"; serialises concurrent opens


class StoreError(GatewayError):
    """The database failed in a way the caller cannot fix by changing the request."""

    kind = ErrorKind.INTERNAL


class SerialCollision(StoreError):
    """A certificate with this serial number already exists; pick a new serial and retry."""

    kind = ErrorKind.CONFLICT


# --- error translation ---------------------------------------------------------------

# constraint name (PostgreSQL message) or "table.column" (SQLite message) -> client message
_UNIQUE_MESSAGES: tuple[tuple[str, str, str], ...] = (
    ("uq_certificates_fingerprint_sha256", "certificates.fingerprint_sha256",
     "a certificate with this fingerprint already exists"),
    ("uq_end_entities_name_protocol_config", "end_entities.name",
     "an end entity with this name already exists in this protocol configuration"),
    ("uq_api_keys_key_sha256", "api_keys.key_sha256", "an API key with this hash already exists"),
)


def _is_serial_violation(message: str) -> bool:
    return "uq_certificates_serial" in message or "certificates.serial" in message


def _integrity_error(exc: IntegrityError, what: str, serial: str | None) -> GatewayError:
    orig = exc.orig
    message = str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "23505" or "UNIQUE constraint failed" in message:
        if _is_serial_violation(message):
            return SerialCollision(f"serial number {serial} is already in use")
        for pg_name, sqlite_column, client_message in _UNIQUE_MESSAGES:
            if pg_name in message or sqlite_column in message:
                return Conflict(client_message)
        return Conflict(f"{what} already exists")
    if sqlstate == "23503" or "FOREIGN KEY constraint failed" in message:
        return Conflict(f"{what} refers to a CA that does not exist")
    log.warning("store constraint violation on %s: %s", what, type(orig).__name__)
    return StoreError(f"{what} violates a database constraint")


def _db_error(exc: BaseException, what: str) -> GatewayError:
    if isinstance(exc, IntegrityError):
        return _integrity_error(exc, what, None)
    if isinstance(exc, (OperationalError, InterfaceError, OSError)):
        log.warning("store unavailable while handling %s: %s", what, type(exc).__name__)
        return StoreError("database unavailable", kind=ErrorKind.UNAVAILABLE)
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # raised while binding parameters, e.g. a naive datetime (our own message)
        if isinstance(exc.orig, (ValueError, TypeError)):
            return StoreError(f"invalid value for {what}: {exc.orig}")
    log.warning("store error while handling %s: %s", what, type(exc).__name__)
    return StoreError("database error")


@contextlib.contextmanager
def _translated(what: str, serial: str | None = None) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise _integrity_error(exc, what, serial) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _db_error(exc, what) from exc


# --- value helpers --------------------------------------------------------------------


def normalize_serial(value: str) -> str:
    """Canonical serial form: lowercase hex, no leading zeros; accepts ``0x`` and colons."""
    try:
        number = int(value.replace(":", "").strip(), 16)
    except (ValueError, AttributeError):
        raise BadRequest("serial number is not a hexadecimal number") from None
    if number < 0:
        raise BadRequest("serial number must not be negative")
    return serial_hex(number)


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").strip().lower()


def _values(rec: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name not in drop}


def _record(cls: type[Rec], row: Any) -> Rec:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _checked_fields(cls: type, fields: dict[str, Any], fixed: frozenset[str]) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)} - fixed
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise StoreError(f"cannot update field(s) {', '.join(unknown)} of {cls.__name__}")
    return dict(fields)


def _page(limit: int, offset: int) -> tuple[int, int]:
    if limit < 0 or offset < 0:
        raise BadRequest("limit and offset must not be negative")
    return limit, offset


def _certificate_conditions(flt: CertificateFilter | None) -> list[ColumnElement[bool]]:
    c = t.certificates.c
    if flt is None:
        return []
    conds: list[ColumnElement[bool]] = []
    if flt.ca_id is not None:
        conds.append(c.ca_id == flt.ca_id)
    if flt.status is not None:
        conds.append(c.status == flt.status)
    if flt.profile is not None:
        conds.append(c.profile == flt.profile)
    if flt.entity_id is not None:
        conds.append(c.entity_id == flt.entity_id)
    if flt.protocol_config is not None:
        conds.append(c.protocol_config == flt.protocol_config)
    if flt.subject_contains:
        conds.append(func.lower(c.subject).contains(flt.subject_contains.lower(), autoescape=True))
    if flt.expires_before is not None:
        conds.append(c.not_after < flt.expires_before)
    if flt.issued_after is not None:
        conds.append(c.created_at >= flt.issued_after)
    return conds


def _event_conditions(flt: EventFilter | None) -> list[ColumnElement[bool]]:
    c = t.events.c
    if flt is None:
        return []
    conds: list[ColumnElement[bool]] = []
    for name in ("type", "status", "entity_id", "protocol_config"):
        value = getattr(flt, name)
        if value is not None:
            conds.append(c[name] == value)
    if flt.serial is not None:
        conds.append(c.serial == normalize_serial(flt.serial))
    if flt.since is not None:
        conds.append(c.created_at >= flt.since)
    return conds


# --- operations on one connection -----------------------------------------------------


class Tx:
    """Store operations inside one database transaction (see :meth:`Store.transaction`).

    Inserts run under a savepoint, so a caller may catch :class:`SerialCollision`,
    choose a new serial and retry without losing the rest of the transaction.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @property
    def connection(self) -> AsyncConnection:
        """This transaction's connection, for protocol packages' own tables (same unit of work)."""
        return self._conn

    # helpers

    async def _insert(self, table: Table, values: dict[str, Any], what: str,
                      serial: str | None = None, *, savepoint: bool = True) -> Any:
        """``savepoint``: let a caller catch a constraint failure and go on with the
        transaction; rows that nobody retries (audit events) skip its two statements."""
        with _translated(what, serial):
            if not savepoint:
                return await self._conn.execute(table.insert(), values)
            async with self._conn.begin_nested():
                return await self._conn.execute(table.insert(), values)  # bound, not built: cheaper

    async def _update(self, table: Table, where: ColumnElement[bool], values: dict[str, Any],
                      what: str) -> int:
        with _translated(what):
            result = await self._conn.execute(table.update().where(where).values(**values))
        return result.rowcount

    async def _exists(self, table: Table, where: ColumnElement[bool], what: str) -> bool:
        with _translated(what):
            return (await self._conn.execute(select(1).select_from(table).where(where))).first() is not None

    async def _one(self, cls: type[Rec], stmt: Select[Any], what: str) -> Rec | None:
        with _translated(what):
            row = (await self._conn.execute(stmt)).first()
        return None if row is None else _record(cls, row)

    async def _all(self, cls: type[Rec], stmt: Select[Any], what: str) -> list[Rec]:
        with _translated(what):
            rows = (await self._conn.execute(stmt)).all()
        return [_record(cls, row) for row in rows]

    async def _update_or_missing(self, table: Table, key: str, fields: dict[str, Any],
                                 what: str) -> None:
        where = table.c.id == key
        if fields:
            if await self._update(table, where, fields, what) == 1:
                return
        elif await self._exists(table, where, what):
            return
        raise NotFound(f"{what} not found")

    # CAs

    async def insert_ca(self, rec: CARecord) -> None:
        await self._insert(t.cas, _values(rec), f"CA {rec.id!r}")

    async def update_ca(self, ca_id: str, **fields: Any) -> None:
        """Change CA columns; ``crl_number`` is better advanced with :meth:`next_crl_number`."""
        values = _checked_fields(CARecord, fields, frozenset({"id"}))
        await self._update_or_missing(t.cas, ca_id, values, f"CA {ca_id!r}")

    async def get_ca(self, ca_id: str) -> CARecord | None:
        return await self._one(CARecord, select(t.cas).where(t.cas.c.id == ca_id), "CA")

    async def list_cas(self) -> list[CARecord]:
        stmt = select(t.cas).order_by(t.cas.c.created_at, t.cas.c.id)
        return await self._all(CARecord, stmt, "CAs")

    async def next_crl_number(self, ca_id: str) -> int:
        """Increment and return the CA's CRL number in one statement (row-locked)."""
        c = t.cas.c
        stmt = (
            t.cas.update().where(c.id == ca_id)
            .values(crl_number=c.crl_number + 1)
            .returning(c.crl_number)
        )
        with _translated(f"CA {ca_id!r}"):
            number = (await self._conn.execute(stmt)).scalar_one_or_none()
        if number is None:
            raise NotFound(f"CA {ca_id!r} not found")
        return int(number)

    # certificates

    async def insert_certificate(self, rec: CertificateRecord) -> None:
        values = _values(rec)
        values["serial"] = normalize_serial(rec.serial)
        values["fingerprint_sha256"] = normalize_fingerprint(rec.fingerprint_sha256)
        if values["status"] not in CERT_STATUSES:
            raise StoreError(f"unknown certificate status {rec.status!r}")
        await self._insert(t.certificates, values, f"certificate {values['serial']}",
                           serial=values["serial"])

    async def get_certificate(self, serial_hex: str) -> CertificateRecord | None:
        stmt = select(t.certificates).where(t.certificates.c.serial == normalize_serial(serial_hex))
        return await self._one(CertificateRecord, stmt, "certificate")

    async def get_certificate_by_fingerprint(self, fp: str) -> CertificateRecord | None:
        c = t.certificates.c
        stmt = select(t.certificates).where(c.fingerprint_sha256 == normalize_fingerprint(fp))
        return await self._one(CertificateRecord, stmt, "certificate")

    async def list_certificates(self, flt: CertificateFilter | None = None, limit: int = 100,
                                offset: int = 0) -> list[CertificateRecord]:
        """Newest first (by creation time, then insertion order)."""
        limit, offset = _page(limit, offset)
        c = t.certificates.c
        stmt = (
            select(t.certificates).where(*_certificate_conditions(flt))
            .order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        )
        return await self._all(CertificateRecord, stmt, "certificates")

    async def count_certificates(self, flt: CertificateFilter | None = None) -> int:
        stmt = select(func.count()).select_from(t.certificates).where(*_certificate_conditions(flt))
        with _translated("certificates"):
            return int((await self._conn.execute(stmt)).scalar_one())

    async def update_certificate_status(
        self, serial_hex: str, *, expect: set[str], status: str, reason: int | None,
        revoked_at: dt.datetime | None, invalidity_date: dt.datetime | None,
    ) -> CertificateRecord | None:
        """Compare-and-set: change status only if the current one is in ``expect``.

        Returns the updated record, or None when the current status did not match
        (the caller decides which Conflict to raise). NotFound if no such serial.
        """
        serial = normalize_serial(serial_hex)
        if status not in CERT_STATUSES or not expect or not set(expect) <= CERT_STATUSES:
            raise StoreError("unknown certificate status in status change")
        c = t.certificates.c
        stmt = (
            t.certificates.update()
            .where(c.serial == serial, c.status.in_(sorted(expect)))
            .values(status=status, revocation_reason=reason, revoked_at=revoked_at,
                    invalidity_date=invalidity_date)
            .returning(*t.certificates.c)
        )
        what = f"certificate {serial}"
        with _translated(what):
            row = (await self._conn.execute(stmt)).first()
        if row is not None:
            return _record(CertificateRecord, row)
        if not await self._exists(t.certificates, c.serial == serial, what):
            raise NotFound(f"{what} not found")
        return None

    async def revoked_certificates(self, ca_id: str, include_expired: bool = True) -> list[CertificateRecord]:
        """Certificates a CRL must list: revoked or on hold."""
        c = t.certificates.c
        conds = [c.ca_id == ca_id, c.status.in_(("revoked", "hold"))]
        if not include_expired:
            conds.append(c.not_after >= utcnow())
        stmt = select(t.certificates).where(*conds).order_by(c.revoked_at, c.id)
        return await self._all(CertificateRecord, stmt, "certificates")

    # pending requests

    async def insert_request(self, rec: RequestRecord) -> None:
        values = _values(rec)
        if rec.serial is not None:
            values["serial"] = normalize_serial(rec.serial)
        await self._insert(t.requests, values, f"request {rec.id!r}")

    async def get_request(self, request_id: str) -> RequestRecord | None:
        stmt = select(t.requests).where(t.requests.c.id == request_id)
        return await self._one(RequestRecord, stmt, "request")

    async def list_requests(self, status: str | None = None, ca_id: str | None = None) -> list[RequestRecord]:
        """Oldest first: the order an operator should work through them."""
        c = t.requests.c
        conds = []
        if status is not None:
            conds.append(c.status == status)
        if ca_id is not None:
            conds.append(c.ca_id == ca_id)
        stmt = select(t.requests).where(*conds).order_by(c.created_at, c.id)
        return await self._all(RequestRecord, stmt, "requests")

    async def update_request(self, request_id: str, *, expect: str, **fields: Any) -> bool:
        """Compare-and-set on status: False if the request is no longer in ``expect``."""
        values = _checked_fields(RequestRecord, fields, frozenset({"id"}))
        if values.get("serial") is not None:
            values["serial"] = normalize_serial(values["serial"])
        c = t.requests.c
        what = f"request {request_id!r}"
        if values:
            if await self._update(t.requests, (c.id == request_id) & (c.status == expect), values, what):
                return True
        elif await self._exists(t.requests, (c.id == request_id) & (c.status == expect), what):
            return True
        if not await self._exists(t.requests, c.id == request_id, what):
            raise NotFound(f"{what} not found")
        return False

    # protocol configurations

    async def bump_generation(self, name: str = "config") -> None:
        """Advance a generation counter in this transaction (see ``schema.generations``)."""
        with _translated(f"{name} generation"):
            await self._conn.execute(
                t.generations.update().where(t.generations.c.name == name)
                .values(value=t.generations.c.value + 1))

    async def generation(self, name: str = "config") -> int:
        with _translated(f"{name} generation"):
            value = (await self._conn.execute(
                select(t.generations.c.value).where(t.generations.c.name == name))).scalar()
        return int(value or 0)

    async def insert_protocol_config(self, rec: ProtocolConfigRecord) -> None:
        await self._insert(t.protocol_configs, _values(rec), f"protocol configuration {rec.id!r}")
        await self.bump_generation()

    async def get_protocol_config(self, config_id: str) -> ProtocolConfigRecord | None:
        stmt = select(t.protocol_configs).where(t.protocol_configs.c.id == config_id)
        return await self._one(ProtocolConfigRecord, stmt, "protocol configuration")

    async def list_protocol_configs(self, protocol: str | None = None) -> list[ProtocolConfigRecord]:
        c = t.protocol_configs.c
        stmt = select(t.protocol_configs).order_by(c.id)
        if protocol is not None:
            stmt = stmt.where(c.protocol == protocol)
        return await self._all(ProtocolConfigRecord, stmt, "protocol configurations")

    async def update_protocol_config(self, config_id: str, **fields: Any) -> None:
        values = _checked_fields(ProtocolConfigRecord, fields, frozenset({"id"}))
        await self._update_or_missing(t.protocol_configs, config_id, values,
                                      f"protocol configuration {config_id!r}")
        await self.bump_generation()

    async def delete_protocol_config(self, config_id: str) -> bool:
        with _translated(f"protocol configuration {config_id!r}"):
            result = await self._conn.execute(
                t.protocol_configs.delete().where(t.protocol_configs.c.id == config_id))
        await self.bump_generation()
        return result.rowcount == 1

    # end entities

    async def insert_end_entity(self, rec: EndEntityRecord) -> None:
        await self._insert(t.end_entities, _values(rec), f"end entity {rec.id!r}")

    async def get_end_entity(self, entity_id: str) -> EndEntityRecord | None:
        stmt = select(t.end_entities).where(t.end_entities.c.id == entity_id)
        return await self._one(EndEntityRecord, stmt, "end entity")

    async def find_end_entity(self, name: str, protocol_config: str | None) -> EndEntityRecord | None:
        """The entity called ``name`` within ``protocol_config`` (None: not bound to one)."""
        c = t.end_entities.c
        scope = c.protocol_config.is_(None) if protocol_config is None else c.protocol_config == protocol_config
        stmt = select(t.end_entities).where(c.name == name, scope).order_by(c.created_at, c.id).limit(1)
        return await self._one(EndEntityRecord, stmt, "end entity")

    async def list_end_entities(self, status: str | None = None, protocol_config: str | None = None,
                                limit: int = 100, offset: int = 0) -> list[EndEntityRecord]:
        """Ordered by name."""
        limit, offset = _page(limit, offset)
        c = t.end_entities.c
        conds = []
        if status is not None:
            conds.append(c.status == status)
        if protocol_config is not None:
            conds.append(c.protocol_config == protocol_config)
        stmt = select(t.end_entities).where(*conds).order_by(c.name, c.id).limit(limit).offset(offset)
        return await self._all(EndEntityRecord, stmt, "end entities")

    async def update_end_entity(self, entity_id: str, **fields: Any) -> None:
        """Change entity columns; ``updated_at`` is set to now unless given."""
        values = _checked_fields(EndEntityRecord, fields, frozenset({"id"}))
        values.setdefault("updated_at", utcnow())
        await self._update_or_missing(t.end_entities, entity_id, values, f"end entity {entity_id!r}")

    # events

    async def add_event(self, rec: EventRecord) -> int:
        """Append an audit event; returns its id (``rec.id`` is ignored)."""
        values = _values(rec, drop=("id",))
        if rec.serial is not None:
            values["serial"] = normalize_serial(rec.serial)
        result = await self._insert(t.events, values, "event", savepoint=False)
        return int(result.inserted_primary_key[0])

    async def list_events(self, flt: EventFilter | None = None, limit: int = 100,
                          offset: int = 0) -> list[EventRecord]:
        """Newest first (by time, then insertion order)."""
        limit, offset = _page(limit, offset)
        c = t.events.c
        stmt = (
            select(t.events).where(*_event_conditions(flt))
            .order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        )
        return await self._all(EventRecord, stmt, "events")

    # admin API keys

    async def insert_api_key(self, rec: ApiKeyRecord) -> None:
        values = _values(rec)
        values["key_sha256"] = rec.key_sha256.lower()
        await self._insert(t.api_keys, values, f"API key {rec.id!r}")

    async def find_api_key_by_hash(self, sha256_hex: str) -> ApiKeyRecord | None:
        stmt = select(t.api_keys).where(t.api_keys.c.key_sha256 == sha256_hex.lower())
        return await self._one(ApiKeyRecord, stmt, "API key")

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        c = t.api_keys.c
        return await self._all(ApiKeyRecord, select(t.api_keys).order_by(c.created_at, c.id), "API keys")


# --- the store ------------------------------------------------------------------------


def _engine_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("store URL is not a valid database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file::memory:"):
            raise ConfigError("the SQLite store needs a file path, not an in-memory database")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"unsupported store database {backend!r} (use sqlite or postgresql)")


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, busy timeout, and explicit BEGIN so writers lock up front.

    The sqlite3 driver's own transaction handling defers BEGIN and breaks
    savepoints; we emit BEGIN ourselves, IMMEDIATE for write transactions so two
    writers queue on the busy timeout instead of failing on a lock upgrade.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # straight to the driver: BEGIN runs once per transaction, and the full
        # execute path (events, context, result) cost more than the statement itself
        statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get("gateway_write", False) else "BEGIN"
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        except Exception as exc:  # the driver's own error: give it SQLAlchemy's shape
            raise OperationalError(statement, None, exc) from exc
        finally:
            cursor.close()


def migration_locations() -> list[Path]:
    """Core migrations plus each protocol package's own (from the composition root).

    A protocol's migrations form their own Alembic branch off the core's first
    revision (``branch_labels=("<name>",)``), so protocols add tables without
    touching the core chain or each other; the store upgrades to all heads.
    """
    from ..composition import migration_locations as protocol_migrations

    return [MIGRATIONS_DIR / "versions", *protocol_migrations()]


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in migration_locations()))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "heads")


class Store:
    """The gateway's database. Open with :meth:`Store.open`; close with :meth:`close`.

    Inside :meth:`transaction` use the ``tx`` methods, not the Store's: a Store
    method takes its own connection, which on SQLite waits for the open write
    transaction to finish.
    """

    def __init__(self, engine: AsyncEngine, schema: str | None = None,
                 write_engine: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._own_write_engine = write_engine
        self._write_engine = (write_engine or engine).execution_options(gateway_write=True)
        self.schema = schema
        self._config_generation = 0

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None,
                   sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> "Store":
        """Connect and migrate to the newest schema.

        ``url``: ``sqlite+aiosqlite:////abs/path.db`` or
        ``postgresql+asyncpg://user@host:5432/db`` (plain ``sqlite://`` and
        ``postgresql://`` are accepted too). ``schema`` (PostgreSQL only) keeps all
        tables in that schema, created if missing; tests use it for isolation.
        """
        engine_url = _engine_url(url)
        dialect = engine_url.get_backend_name()
        kwargs: dict[str, Any] = {"hide_parameters": True}  # keep values out of logs and errors
        if dialect == "sqlite":
            if schema is not None:
                raise ConfigError("a store schema is only supported on PostgreSQL")
            Path(engine_url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
            if schema is not None:
                if not _SCHEMA_NAME.match(schema):
                    raise ConfigError("store schema must be a lowercase SQL identifier")
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        if dialect == "sqlite":
            # statements run on the loop's thread, lock waits and fsyncs in aiosqlite's
            # worker (sqlite_driver.py): per-statement thread hand-offs were the top cost
            database = str(Path(engine_url.database).expanduser())
            kwargs["async_creator"] = lambda: sqlite_driver.connect(database)
        engine = create_async_engine(engine_url, **kwargs)
        write_engine = None
        if dialect == "sqlite":
            _install_sqlite_hooks(engine, sqlite_busy_timeout_ms)
            # SQLite has one writer at a time. One pooled write connection makes this
            # process's writers queue in the pool (FIFO, no sleeping in SQLite's busy
            # handler), which cut ACME p99 at concurrency 8 from ~3 s to under 1 s.
            write_engine = create_async_engine(
                engine_url, pool_size=1, max_overflow=0,
                pool_timeout=max(30.0, sqlite_busy_timeout_ms / 1000), **kwargs,
            )
            _install_sqlite_hooks(write_engine, sqlite_busy_timeout_ms)
        store = cls(engine, schema, write_engine)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def _migrate(self) -> None:
        with _translated("schema migration"):
            async with self._write_engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                    if self.schema is not None:
                        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                await conn.run_sync(_upgrade)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for protocol packages that keep tables of their own
        (``protocols/<name>/schema.py``); core tables go through the methods here."""
        return self._engine

    @property
    def write_engine(self) -> AsyncEngine:
        """The engine for write transactions (on SQLite they take the write lock at BEGIN,
        so concurrent writers queue instead of failing on lock upgrade)."""
        return self._write_engine

    async def close(self) -> None:
        await self._engine.dispose()
        if self._own_write_engine is not None:
            await self._own_write_engine.dispose()

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One database transaction: commits when the block ends, rolls back if it raises."""
        try:
            async with self._write_engine.begin() as conn:
                yield Tx(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise _db_error(exc, "transaction") from exc

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A read connection for several queries (no write lock is taken)."""
        try:
            async with self._engine.connect() as conn:
                yield Tx(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise _db_error(exc, "read") from exc

    @staticmethod
    def translated(what: str, serial: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Driver errors raised inside the block become gateway errors."""
        return _translated(what, serial)

    async def config_generation_now(self) -> int:
        """The protocol-configuration generation as committed in the store, by any process."""
        return await self._read(Tx.generation, "config")

    async def _write(self, op: Callable[Concatenate[Tx, P], Awaitable[R]], *args: P.args,
                     **kwargs: P.kwargs) -> R:
        async with self.transaction() as tx:
            return await op(tx, *args, **kwargs)

    async def _read(self, op: Callable[Concatenate[Tx, P], Awaitable[R]], *args: P.args,
                    **kwargs: P.kwargs) -> R:
        try:
            async with self._engine.connect() as conn:
                return await op(Tx(conn), *args, **kwargs)
        except (SQLAlchemyError, OSError) as exc:
            raise _db_error(exc, "read") from exc

    # CAs
    async def insert_ca(self, rec: CARecord) -> None:
        await self._write(Tx.insert_ca, rec)

    async def update_ca(self, ca_id: str, **fields: Any) -> None:
        await self._write(Tx.update_ca, ca_id, **fields)

    async def get_ca(self, ca_id: str) -> CARecord | None:
        return await self._read(Tx.get_ca, ca_id)

    async def list_cas(self) -> list[CARecord]:
        return await self._read(Tx.list_cas)

    async def next_crl_number(self, ca_id: str) -> int:
        return await self._write(Tx.next_crl_number, ca_id)

    # certificates
    async def insert_certificate(self, rec: CertificateRecord) -> None:
        await self._write(Tx.insert_certificate, rec)

    async def get_certificate(self, serial_hex: str) -> CertificateRecord | None:
        return await self._read(Tx.get_certificate, serial_hex)

    async def get_certificate_by_fingerprint(self, fp: str) -> CertificateRecord | None:
        return await self._read(Tx.get_certificate_by_fingerprint, fp)

    async def list_certificates(self, flt: CertificateFilter | None = None, limit: int = 100,
                                offset: int = 0) -> list[CertificateRecord]:
        return await self._read(Tx.list_certificates, flt, limit, offset)

    async def count_certificates(self, flt: CertificateFilter | None = None) -> int:
        return await self._read(Tx.count_certificates, flt)

    async def update_certificate_status(
        self, serial_hex: str, *, expect: set[str], status: str, reason: int | None,
        revoked_at: dt.datetime | None, invalidity_date: dt.datetime | None,
    ) -> CertificateRecord | None:
        return await self._write(Tx.update_certificate_status, serial_hex, expect=expect, status=status,
                                 reason=reason, revoked_at=revoked_at, invalidity_date=invalidity_date)

    async def revoked_certificates(self, ca_id: str, include_expired: bool = True) -> list[CertificateRecord]:
        return await self._read(Tx.revoked_certificates, ca_id, include_expired)

    # pending requests
    async def insert_request(self, rec: RequestRecord) -> None:
        await self._write(Tx.insert_request, rec)

    async def get_request(self, request_id: str) -> RequestRecord | None:
        return await self._read(Tx.get_request, request_id)

    async def list_requests(self, status: str | None = None, ca_id: str | None = None) -> list[RequestRecord]:
        return await self._read(Tx.list_requests, status, ca_id)

    async def update_request(self, request_id: str, *, expect: str, **fields: Any) -> bool:
        return await self._write(Tx.update_request, request_id, expect=expect, **fields)

    # protocol configurations
    @property
    def config_generation(self) -> int:
        """Bumped by every protocol-configuration write through this Store, so caches
        of configurations in this process drop stale entries at once (other processes'
        writes are picked up by the caches' short TTLs)."""
        return self._config_generation

    async def insert_protocol_config(self, rec: ProtocolConfigRecord) -> None:
        try:
            await self._write(Tx.insert_protocol_config, rec)
        finally:
            self._config_generation += 1

    async def get_protocol_config(self, config_id: str) -> ProtocolConfigRecord | None:
        return await self._read(Tx.get_protocol_config, config_id)

    async def list_protocol_configs(self, protocol: str | None = None) -> list[ProtocolConfigRecord]:
        return await self._read(Tx.list_protocol_configs, protocol)

    async def update_protocol_config(self, config_id: str, **fields: Any) -> None:
        try:
            await self._write(Tx.update_protocol_config, config_id, **fields)
        finally:
            self._config_generation += 1

    async def delete_protocol_config(self, config_id: str) -> bool:
        try:
            return await self._write(Tx.delete_protocol_config, config_id)
        finally:
            self._config_generation += 1

    # end entities
    async def insert_end_entity(self, rec: EndEntityRecord) -> None:
        await self._write(Tx.insert_end_entity, rec)

    async def get_end_entity(self, entity_id: str) -> EndEntityRecord | None:
        return await self._read(Tx.get_end_entity, entity_id)

    async def find_end_entity(self, name: str, protocol_config: str | None) -> EndEntityRecord | None:
        return await self._read(Tx.find_end_entity, name, protocol_config)

    async def list_end_entities(self, status: str | None = None, protocol_config: str | None = None,
                                limit: int = 100, offset: int = 0) -> list[EndEntityRecord]:
        return await self._read(Tx.list_end_entities, status, protocol_config, limit, offset)

    async def update_end_entity(self, entity_id: str, **fields: Any) -> None:
        await self._write(Tx.update_end_entity, entity_id, **fields)

    # events
    async def add_event(self, rec: EventRecord) -> int:
        return await self._write(Tx.add_event, rec)

    async def list_events(self, flt: EventFilter | None = None, limit: int = 100,
                          offset: int = 0) -> list[EventRecord]:
        return await self._read(Tx.list_events, flt, limit, offset)

    # admin API keys
    async def insert_api_key(self, rec: ApiKeyRecord) -> None:
        await self._write(Tx.insert_api_key, rec)

    async def find_api_key_by_hash(self, sha256_hex: str) -> ApiKeyRecord | None:
        return await self._read(Tx.find_api_key_by_hash, sha256_hex)

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        return await self._read(Tx.list_api_keys)

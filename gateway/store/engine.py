"""Connecting to the store's database and bringing its schema up to date.

Store URLs name SQLite (a file, never in memory) or PostgreSQL; the engines run
``aiosqlite`` (statements on the loop's thread, see :mod:`.sqlite_driver`) or
``asyncpg``. On SQLite, requests' statements go through :class:`SqliteFastPaths`
(synchronous engines and the bare driver, on the loop); the async engines there serve
migrations and direct engine use (tests). The schema is created and upgraded by
Alembic: the core's chain plus one branch per protocol package (their folders come
from the composition root).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import ConfigError
from . import sqlite_driver
from .direct_reads import DirectReads
from .inline_writes import InlineWriter
from .errors import translated

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "gateway_write"
"""Execution option of the write engine: its transactions BEGIN IMMEDIATE on SQLite."""
BEGUN_OPTION = "gateway_begun"
"""Execution option of an engine whose BEGIN its caller has already run (.inline_writes)."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_LOCK_KEY = 0x6761_7465_7761_79  # arbitrary, "gateway"; serialises concurrent opens


def engine_url(url: str) -> URL:
    """The URL with the gateway's async driver for its database (ConfigError otherwise)."""
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


def _sqlite_path(url: URL) -> Path:
    assert url.database, "engine_url() refuses a SQLite URL without a file"
    return Path(url.database).expanduser()


def install_sqlite_hooks(engine: AsyncEngine | Engine, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, busy timeout, and explicit BEGIN so writers lock up front.

    The sqlite3 driver's own transaction handling defers BEGIN and breaks
    savepoints; we emit BEGIN ourselves, IMMEDIATE for write transactions so two
    writers queue on the busy timeout instead of failing on a lock upgrade.
    """

    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(target, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(target, "begin")
    def _on_begin(conn: Connection) -> None:
        # straight to the driver: BEGIN runs once per transaction, and the full
        # execute path (events, context, result) cost more than the statement itself
        options = conn.get_execution_options()
        if options.get(BEGUN_OPTION, False):
            return
        statement = "BEGIN IMMEDIATE" if options.get(WRITE_OPTION, False) else "BEGIN"
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statement)
        except Exception as exc:  # the driver's own error: give it SQLAlchemy's shape
            raise OperationalError(statement, None, exc) from exc
        finally:
            cursor.close()


def _replace_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Hand out no pooled PostgreSQL connection the server has closed (a restart, a
    failover, ``pg_terminate_backend``): the pool replaces it before a request sees it.

    This is asyncpg's own record of its socket, with no round trip. SQLAlchemy's
    ``pool_pre_ping`` on asyncpg costs three (BEGIN, a ping, ROLLBACK) per checkout, a
    fifth of the gateway's CPU on PostgreSQL (bench profile, 2026-12-08). A connection
    that dies after this check, or silently, fails its statement; reads and uncommitted
    transactions are then run once more on a fresh connection (``Store.retrying``)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_engines(url: str, *, schema: str | None = None,
                   sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> tuple[AsyncEngine, AsyncEngine | None]:
    """The read engine, and on SQLite a separate one-connection engine for writes
    (None on PostgreSQL, where the read engine writes too).

    ``schema`` (PostgreSQL only) keeps all tables in that schema; tests use it for
    isolation.
    """
    parsed = engine_url(url)
    dialect = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"hide_parameters": True}  # keep values out of logs and errors
    if dialect == "sqlite":
        if schema is not None:
            raise ConfigError("a store schema is only supported on PostgreSQL")
        database = _sqlite_path(parsed)
        database.parent.mkdir(parents=True, exist_ok=True)
        # statements run on the loop's thread, lock waits and fsyncs in aiosqlite's
        # worker (sqlite_driver.py): per-statement thread hand-offs were the top cost
        kwargs["async_creator"] = lambda: sqlite_driver.connect(str(database))
    else:
        if schema is not None:
            if not _SCHEMA_NAME.match(schema):
                raise ConfigError("store schema must be a lowercase SQL identifier")
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    engine = create_async_engine(parsed, **kwargs)
    if dialect != "sqlite":
        event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
        return engine, None
    install_sqlite_hooks(engine, sqlite_busy_timeout_ms)
    # SQLite has one writer at a time. One pooled write connection makes this
    # process's writers queue in the pool (FIFO, no sleeping in SQLite's busy
    # handler), which cut ACME p99 at concurrency 8 from ~3 s to under 1 s.
    write_engine = create_async_engine(
        parsed, pool_size=1, max_overflow=0,
        pool_timeout=max(30.0, sqlite_busy_timeout_ms / 1000), **kwargs,
    )
    install_sqlite_hooks(write_engine, sqlite_busy_timeout_ms)
    return engine, write_engine


def migration_locations() -> list[Path]:
    """Core migrations plus each protocol package's own (from the composition root).

    A protocol's migrations form their own Alembic branch off the core's first
    revision (``branch_labels=("<name>",)``), so protocols add tables without
    touching the core chain or each other; the store upgrades to all heads.
    """
    from ..composition import migration_locations as protocol_migrations

    return [MIGRATIONS_DIR / "versions", *protocol_migrations()]


def alembic_config(connection: Connection) -> Config:
    """Alembic's configuration for migrating over ``connection`` (all branches)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in migration_locations()))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "heads")


async def migrate(write_engine: AsyncEngine, schema: str | None = None) -> None:
    """Upgrade to every head in one transaction; concurrent opens on PostgreSQL
    serialise on an advisory lock (on SQLite, on the write lock BEGIN takes)."""
    with translated("schema migration"):
        async with write_engine.begin() as conn:
            if write_engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                if schema is not None:
                    await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.run_sync(_upgrade)


@dataclass(frozen=True)
class SqliteFastPaths:
    """What runs SQLite statements without the asyncio adaption (all three or none):
    read blocks (:mod:`.inline_reads`), point reads (:mod:`.direct_reads`) and write
    transactions (:mod:`.inline_writes`)."""

    reads: Engine
    direct: DirectReads
    writer: InlineWriter

    @property
    def engines(self) -> tuple[Engine, Engine]:
        return self.reads, self.writer.engine

    def close(self) -> None:
        self.writer.close()
        self.direct.close()
        self.reads.dispose()


def create_sqlite_fast_paths(url: str, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> SqliteFastPaths | None:
    """On SQLite, the synchronous engines and the bare-driver connection; None on PostgreSQL.

    The read engine's pool never makes a caller wait (unbounded overflow): a wait for a
    pooled connection would block the event loop's thread, and with it the reads that
    would give connections back. The write engine has one connection; its BEGIN
    IMMEDIATE and COMMIT run in the writer thread.
    """
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    sync_url = parsed.set(drivername="sqlite+pysqlite")
    shared = {"hide_parameters": True, "connect_args": {"check_same_thread": False}}
    reads = create_engine(sync_url, pool_size=8, max_overflow=-1, **shared)
    writes = create_engine(sync_url, pool_size=1, max_overflow=0, **shared)
    for engine in (reads, writes):
        install_sqlite_hooks(engine, sqlite_busy_timeout_ms)
    writer = InlineWriter(writes.execution_options(**{WRITE_OPTION: True, BEGUN_OPTION: True}),
                          queue_timeout=max(30.0, sqlite_busy_timeout_ms / 1000))
    return SqliteFastPaths(reads, DirectReads(str(_sqlite_path(parsed)), sqlite_busy_timeout_ms), writer)

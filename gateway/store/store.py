"""The gateway's one async store: embedded SQLite (default) or PostgreSQL.

A :class:`Store` owns the engines and hands out blocks: :meth:`Store.read` (a
connection, no write lock) and :meth:`Store.transaction` (all or nothing), each
yielding :class:`~gateway.store.queries.Queries`, the per-table queries on that
block's connection. The Store itself has no per-table methods: a caller that reads
twice reads in one block, and writes that belong together commit together.

Modules beside this one: :mod:`.engine` (URLs, engines, SQLite hooks, Alembic),
:mod:`.errors` (driver errors to gateway errors), :mod:`.queries` (SQL per table).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..errors import ErrorKind, GatewayError
from . import engine as engines
from .errors import db_error, is_transient, translated
from .direct_reads import DirectRow, PreparedRead
from .inline_reads import InlineConnection
from .queries import Queries
from .queries.generations import CONFIG as CONFIG_GENERATION
from .queries.generations import PREPARED_GET as GENERATION_BY_NAME

T = TypeVar("T")
log = logging.getLogger(__name__)


class Store:
    """The gateway's database. Open with :meth:`Store.open`; close with :meth:`close`.

    Inside a :meth:`transaction` block run everything on its ``q``: another block
    opened meanwhile takes its own connection, which on SQLite waits for the open
    write transaction to finish.
    """

    def __init__(self, engine: AsyncEngine, schema: str | None = None,
                 write_engine: AsyncEngine | None = None, sqlite: engines.SqliteFastPaths | None = None) -> None:
        self._engine = engine
        self._own_write_engine = write_engine
        self._write_engine = (write_engine or engine).execution_options(**{engines.WRITE_OPTION: True})
        self._sqlite = sqlite
        self.schema = schema

    @classmethod
    async def open(cls, url: str, *, schema: str | None = None,
                   sqlite_busy_timeout_ms: int = engines.SQLITE_BUSY_TIMEOUT_MS) -> "Store":
        """Connect and migrate to the newest schema.

        ``url``: ``sqlite+aiosqlite:////abs/path.db`` or
        ``postgresql+asyncpg://user@host:5432/db`` (plain ``sqlite://`` and
        ``postgresql://`` are accepted too). ``schema`` (PostgreSQL only) keeps all
        tables in that schema, created if missing; tests use it for isolation.
        """
        engine, write_engine = engines.create_engines(url, schema=schema,
                                                      sqlite_busy_timeout_ms=sqlite_busy_timeout_ms)
        store = cls(engine, schema, write_engine, engines.create_sqlite_fast_paths(url, sqlite_busy_timeout_ms))
        try:
            await engines.migrate(store._write_engine, schema)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """The engine reads run on (tests count its transactions)."""
        return self._engine

    @property
    def sync_engines(self) -> tuple[Engine, ...]:
        """Every engine statements of this store run on, as SQLAlchemy's synchronous
        engines (the event targets: tests count transactions and statements on them)."""
        found = [self._engine.sync_engine, self._write_engine.sync_engine]
        if self._sqlite is not None:
            found.extend(self._sqlite.engines)
        return tuple(dict.fromkeys(found))

    @property
    def write_engine(self) -> AsyncEngine:
        """The async engine for write transactions on PostgreSQL; on SQLite, where requests'
        writes go through .inline_writes, migrations and tests use it (its BEGIN is
        IMMEDIATE too, so writers queue instead of failing on lock upgrade)."""
        return self._write_engine

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        await self._engine.dispose()
        if self._own_write_engine is not None:
            await self._own_write_engine.dispose()

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        """One database transaction: commits when the block ends, rolls back if it raises."""
        try:
            async with self._write_connection() as conn:
                yield Queries(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, "transaction") from exc

    def _write_connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction: inline on SQLite (:mod:`.inline_writes`), else the async engine's."""
        if self._sqlite is not None:
            return self._sqlite.writer.transaction()
        return self._write_engine.begin()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Queries]:
        """A read connection for several queries (no write lock is taken)."""
        try:
            async with self._read_connection() as conn:
                yield Queries(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, "read") from exc

    @contextlib.asynccontextmanager
    async def _read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A read connection: inline on SQLite (:mod:`.inline_reads`), else the async engine's
        in autocommit mode.

        On PostgreSQL at READ COMMITTED a transaction around reads adds no consistency
        (every statement takes its own snapshot either way), only a BEGIN and a ROLLBACK
        round trip per block, about 15 % of the gateway's CPU there (bench profile,
        2026-12-08). The pool resets the mode when the connection goes back."""
        if self._sqlite is None:
            async with self._engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
            return
        with self._sqlite.reads.connect() as sync_conn:
            # InlineConnection has the AsyncConnection calls read blocks make (see its module)
            yield cast(AsyncConnection, InlineConnection(sync_conn))

    async def retrying(self, block: Callable[[Queries], Awaitable[T]], *, write: bool = False) -> T:
        """Run ``block`` in a read (or, ``write``, a transaction) and, if the connection
        is lost before anything committed, once more on a fresh connection.

        Safe because nothing of the failed attempt persists: a read changes nothing,
        and a transaction that failed before COMMIT was rolled back by the server. A
        failure during COMMIT itself is not retried (it may have committed)."""
        what = "transaction" if write else "read"
        for attempt in (1, 2):
            committing = False
            try:
                if not write:
                    async with self._read_connection() as conn:
                        return await block(Queries(conn))
                async with self._write_connection() as conn:
                    result = await block(Queries(conn))
                    committing = True
                return result
            except (SQLAlchemyError, OSError, GatewayError) as exc:
                cause = exc.__cause__ if isinstance(exc, GatewayError) else exc
                if attempt == 1 and not committing and cause is not None and is_transient(cause):
                    log.info("store connection lost during a %s (%s); running it again", what, type(cause).__name__)
                    continue
                if isinstance(exc, GatewayError):
                    raise
                raise db_error(exc, what) from exc
        raise AssertionError("unreachable")

    async def read_rows(self, prepared: PreparedRead, params: dict[str, Any], what: str) -> list[Any]:
        """The rows of one prepared SELECT (a point read every request makes): on the bare
        driver on SQLite (:mod:`.direct_reads`), else as a read block (a lost connection is
        retried once). Rows offer ``row._mapping`` and attribute access either way."""
        if self._sqlite is None:
            async def block(q: Queries) -> list[Any]:
                return list((await q.connection.execute(prepared.statement, params)).all())
            return await self.retrying(block)
        try:
            rows: list[DirectRow] = list(self._sqlite.direct.rows(prepared, params))
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, what) from exc
        return rows

    @staticmethod
    def translated(what: str, serial: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Driver errors raised inside the block become gateway errors."""
        return translated(what, serial)

    async def config_generation_now(self) -> int:
        """The protocol-configuration generation as committed in the store, by any process
        (asked on every protocol request, so a lost connection is retried once)."""
        rows = await self.read_rows(GENERATION_BY_NAME, {"name": CONFIG_GENERATION}, "config generation")
        return int(rows[0].value) if rows else 0

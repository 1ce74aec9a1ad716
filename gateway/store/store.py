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
from collections.abc import AsyncIterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from . import engine as engines
from .errors import db_error, translated
from .queries import Queries


class Store:
    """The gateway's database. Open with :meth:`Store.open`; close with :meth:`close`.

    Inside a :meth:`transaction` block run everything on its ``q``: another block
    opened meanwhile takes its own connection, which on SQLite waits for the open
    write transaction to finish.
    """

    def __init__(self, engine: AsyncEngine, schema: str | None = None,
                 write_engine: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._own_write_engine = write_engine
        self._write_engine = (write_engine or engine).execution_options(**{engines.WRITE_OPTION: True})
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
        store = cls(engine, schema, write_engine)
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
    async def transaction(self) -> AsyncIterator[Queries]:
        """One database transaction: commits when the block ends, rolls back if it raises."""
        try:
            async with self._write_engine.begin() as conn:
                yield Queries(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, "transaction") from exc

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Queries]:
        """A read connection for several queries (no write lock is taken)."""
        try:
            async with self._engine.connect() as conn:
                yield Queries(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise db_error(exc, "read") from exc

    @staticmethod
    def translated(what: str, serial: str | None = None) -> contextlib.AbstractContextManager[None]:
        """Driver errors raised inside the block become gateway errors."""
        return translated(what, serial)

    async def config_generation_now(self) -> int:
        """The protocol-configuration generation as committed in the store, by any process."""
        async with self.read() as q:
            return await q.generations.get()

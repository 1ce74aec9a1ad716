"""SQLite write transactions on a synchronous connection: statements inline, waits in a thread.

The same reasoning as :mod:`.inline_reads`, for writes: inside a write transaction
that holds SQLite's write lock a statement never waits for another connection, so
it can run on the loop's thread without the asyncio adaption (a greenlet per
statement, aiosqlite's wrappers). The two calls that can wait run in one worker
thread instead, as before: ``BEGIN IMMEDIATE`` (another process, the CLI or a second
gateway, may hold the lock; SQLite's busy handler waits for it) and ``COMMIT`` (an
fsync with ``synchronous = FULL``).

This process's writers queue on an asyncio lock (first come, first served), the role
the one-connection pool played on the async engine: nobody sleeps in SQLite's busy
handler for a writer of their own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from .errors import StoreError
from .inline_reads import InlineConnection

T = TypeVar("T")


class InlineWriter:
    """Write transactions on ``engine`` (one pooled connection, BEGIN left to us)."""

    def __init__(self, engine: Engine, queue_timeout: float) -> None:
        self._engine = engine
        self._queue_timeout = queue_timeout
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    @property
    def engine(self) -> Engine:
        return self._engine

    async def _waiting(self, what: str, fn: Callable[[], T]) -> T:
        """``fn`` in the writer thread; a cancelled caller still waits for it to finish, so
        the connection is never used by two threads at once (and rollback comes after)."""
        call = asyncio.get_running_loop().run_in_executor(self._thread, fn)
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            await asyncio.wait([call])
            raise
        except sqlite3.Error as exc:  # the driver's own error: give it SQLAlchemy's shape
            raise OperationalError(what, None, exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """BEGIN IMMEDIATE, the block's statements, COMMIT; rolled back if the block raises."""
        try:
            await asyncio.wait_for(self._lock.acquire(), self._queue_timeout)
        except TimeoutError:
            raise StoreError("timed out waiting for the store's write lock") from None
        try:
            with self._engine.connect() as conn:
                dbapi = cast(sqlite3.Connection, conn.connection.dbapi_connection)
                await self._waiting("BEGIN IMMEDIATE", lambda: dbapi.execute("BEGIN IMMEDIATE"))
                try:
                    with conn.begin():  # SQLAlchemy's bookkeeping and events; BEGIN was ours
                        # InlineConnection has the AsyncConnection calls blocks make (see inline_reads)
                        yield cast(AsyncConnection, InlineConnection(conn))
                        await self._waiting("COMMIT", dbapi.commit)
                except BaseException:
                    if dbapi.in_transaction:
                        dbapi.rollback()
                    raise
        finally:
            self._lock.release()

    def close(self) -> None:
        self._engine.dispose()
        self._thread.shutdown(wait=True)


"""SQLite reads on a synchronous SQLAlchemy connection, run inline on the event loop.

A read block on the async engine pays for the asyncio adaption on every call: a
greenlet per ``execute``, aiosqlite's cursor wrappers, and the pool checkout and
reset through the same layers. Measured on this code's own statements (bench,
2026-12-04): a read block with one primary-key SELECT took 169 µs that way, 59 µs on
a synchronous connection and 5 µs on the bare driver; at ~16 read blocks per ACME
certificate that adaption was the largest cost SQLAlchemy added.

The statements were already run on the loop's thread (see :mod:`.sqlite_driver`: a
read on a WAL database does not wait for writers), so running them synchronously
changes no blocking behaviour; only the adaption goes. Write transactions stay on
the async write engine, whose BEGIN IMMEDIATE and COMMIT wait in a worker thread.

:class:`InlineConnection` offers the part of ``AsyncConnection`` that read blocks use
(``execute``, ``exec_driver_sql``, ``scalar``, ``run_sync``, ``begin_nested``, ``dialect``), so the per-table
queries run on it unchanged; :mod:`.inline_writes` hands it out for write transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Executable, Result
from sqlalchemy.engine import Connection, Dialect

T = TypeVar("T")


class InlineConnection:
    """A synchronous connection behind the awaitable calls of ``AsyncConnection``."""

    __slots__ = ("sync_connection",)

    def __init__(self, connection: Connection) -> None:
        self.sync_connection = connection

    @property
    def dialect(self) -> Dialect:
        return self.sync_connection.dialect

    async def execute(self, statement: Executable,
                      parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
                      **kwargs: Any) -> Result[Any]:
        return self.sync_connection.execute(statement, parameters, **kwargs)

    async def exec_driver_sql(self, statement: str, parameters: Any = None, **kwargs: Any) -> Result[Any]:
        return self.sync_connection.exec_driver_sql(statement, parameters, **kwargs)

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(self.sync_connection, *args, **kwargs)

    async def scalar(self, statement: Executable, parameters: Mapping[str, Any] | None = None,
                     **kwargs: Any) -> Any:
        return self.sync_connection.scalar(statement, parameters, **kwargs)

    @contextlib.asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        """A savepoint: released when the block ends, rolled back to if it raises."""
        with self.sync_connection.begin_nested():
            yield

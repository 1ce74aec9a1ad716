"""aiosqlite connections that run fast SQLite calls on the event loop's own thread.

aiosqlite hands *every* call (each execute, fetch, cursor close) to a worker thread
and back: a queue put, a thread wake-up, a GIL hand-over and a self-pipe write to
wake the loop, for calls that take SQLite itself a few microseconds. Under the ACME
benchmark that hand-off was the largest single cost of the gateway (about half of
the event loop's CPU went to SQLAlchemy plus aiosqlite, for ~47 statements per
certificate).

:class:`LoopThreadConnection` keeps aiosqlite's interface (SQLAlchemy's aiosqlite
dialect drives it unchanged) but runs a call inline unless it can wait:

- ``COMMIT`` (an fsync with ``synchronous = FULL``) and closing the connection;
- ``BEGIN IMMEDIATE``, which waits in SQLite's busy handler while another process
  (the CLI, a second gateway on the same file) holds the write lock;
- ``VACUUM`` and checkpoints, which can take long on a big database.

Those still go to the connection's worker thread, so the event loop never sleeps on
a lock or a disk flush. Everything else is a statement on a WAL database, which
neither waits for writers (readers see a snapshot) nor, inside a write transaction
that already holds the lock, for other connections. The sqlite3 connection is
opened with ``check_same_thread=False``; aiosqlite's awaiting keeps the calls on one
connection strictly sequential.
"""

from __future__ import annotations

import asyncio
import sqlite3
from functools import partial
from typing import Any, Callable

import aiosqlite

_THREAD_CALLS = frozenset({"commit", "close", "backup", "iterdump"})
_THREAD_STATEMENTS = ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE", "VACUUM", "PRAGMA WAL_CHECKPOINT")


def _must_wait(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """Whether this call may block (lock wait, fsync, long scan) and so belongs in the thread."""
    name = getattr(fn, "__name__", "")
    if name in _THREAD_CALLS:
        # the connection's commit/close wait on the disk; a cursor's close does not (and
        # runs after every statement, so sending it to the thread would undo the point)
        return not isinstance(getattr(fn, "__self__", None), sqlite3.Cursor)
    if name in ("execute", "executescript", "executemany") and args and isinstance(args[0], str):
        return args[0].lstrip()[:22].upper().startswith(_THREAD_STATEMENTS)
    return False


class LoopThreadConnection(aiosqlite.Connection):
    """An aiosqlite connection whose non-blocking calls run inline (see the module doc)."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None or not self._running or _must_wait(fn, args):
            # aiosqlite leaves its private _execute unannotated (it returns fn's result)
            call = asyncio.ensure_future(super()._execute(fn, *args, **kwargs))  # type: ignore[no-untyped-call]
            try:
                return await asyncio.shield(call)
            except asyncio.CancelledError:
                # Cancelled (shutdown) while the thread still runs the call: wait for it,
                # or the caller's clean-up (a cursor close, a rollback) runs on the
                # connection at the same time and sqlite3 refuses ("Recursive use of
                # cursors not allowed"), which surfaced at shutdown as a traceback.
                await asyncio.wait([call])
                raise
        return fn(*args, **kwargs)


def connect(database: str, **kwargs: Any) -> LoopThreadConnection:
    """Like :func:`aiosqlite.connect` (await the result), with inline fast calls."""
    kwargs["check_same_thread"] = False
    connection = LoopThreadConnection(partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
    return connection

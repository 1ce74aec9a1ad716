"""The SQLite driver: fast statements on the loop's thread, waits (locks, fsync) off it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import text

from gateway.store import Store
from gateway.store.sqlite_driver import _must_wait


def test_only_calls_that_can_wait_leave_the_loop() -> None:
    con = sqlite3.connect(":memory:")
    cur = con.cursor()
    assert _must_wait(con.commit, ())
    assert _must_wait(con.close, ())
    assert _must_wait(cur.execute, ("BEGIN IMMEDIATE",))
    assert _must_wait(cur.execute, ("  vacuum",))
    assert _must_wait(cur.execute, ("PRAGMA wal_checkpoint(TRUNCATE)",))
    assert not _must_wait(cur.execute, ("BEGIN",))
    assert not _must_wait(cur.execute, ("SELECT 1",))
    assert not _must_wait(cur.execute, ("INSERT INTO t VALUES (?)", (1,)))
    assert not _must_wait(cur.fetchall, ())
    assert not _must_wait(con.rollback, ())
    assert not _must_wait(cur.close, ())  # after every statement: must not cost a thread hop


async def test_statements_run_on_the_loop_thread(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        async with store.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            dbapi = raw.driver_connection
            assert dbapi is not None
            await dbapi.create_function("thread_ident", 0, threading.get_ident)
            ident = (await conn.execute(text("SELECT thread_ident()"))).scalar_one()
        assert ident == threading.get_ident()
    finally:
        await store.close()


async def test_a_write_lock_held_elsewhere_does_not_stall_the_loop(tmp_path: Path) -> None:
    """Another process (the CLI, a second gateway) holds the write lock: the writer waits in
    the worker thread while the event loop keeps serving."""
    path = tmp_path / "g.db"
    store = await Store.open(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        async def write() -> None:
            async with store.transaction() as q:
                await q.connection.execute(text("SELECT 1"))

        tick = asyncio.ensure_future(ticker())
        writer = asyncio.ensure_future(write())
        await asyncio.sleep(0.5)
        assert not writer.done()  # still waiting for the lock...
        assert ticks >= 10  # ...and the loop ran meanwhile
        other.execute("COMMIT")
        await asyncio.wait_for(writer, 10)
        tick.cancel()
    finally:
        other.close()
        await store.close()


async def test_a_writer_cancelled_while_waiting_for_the_lock_ends_cleanly(tmp_path: Path) -> None:
    """Shutdown cancels a background job whose BEGIN IMMEDIATE is still waiting in the
    worker thread: the task ends cancelled (not with sqlite3's "Recursive use of cursors",
    which a clean-up racing the thread's call raised), and the store goes on working."""
    path = tmp_path / "g.db"
    store = await Store.open(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with store.transaction() as q:
                await q.connection.execute(text("SELECT 1"))

        writer = asyncio.ensure_future(write())
        await asyncio.sleep(0.3)
        assert not writer.done()
        writer.cancel()
        await asyncio.sleep(0.2)
        other.execute("COMMIT")  # the thread's BEGIN IMMEDIATE now gets the lock
        done, _ = await asyncio.wait([writer], timeout=10)
        assert done and writer.cancelled(), writer.exception()
        async with store.transaction() as q:  # the connection came back usable, not in a transaction
            assert (await q.connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        other.close()
        await store.close()

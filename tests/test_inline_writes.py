"""SQLite write transactions on a synchronous connection (gateway/store/inline_writes.py):
statements inline on the loop, BEGIN IMMEDIATE and COMMIT in the writer thread, all or
nothing, one writer at a time. (Lock waits and cancellation: tests/test_sqlite_driver.py.)"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.errors import Conflict, GatewayError
from gateway.store import Store
from gateway.store.records import EndEntityRecord


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    store = await Store.open(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        yield store
    finally:
        await store.close()


async def test_statements_inline_and_begin_commit_in_the_writer_thread(sqlite_store: Store) -> None:
    seen: list[tuple[str, int]] = []
    async with sqlite_store.transaction() as q:
        dbapi = q.connection.sync_connection.connection.dbapi_connection  # type: ignore[attr-defined]
    dbapi.set_trace_callback(lambda sql: seen.append((sql.split()[0].upper(), threading.get_ident())))
    try:
        async with sqlite_store.transaction() as q:
            await q.entities.insert(EndEntityRecord(id="e1", name="one", kind="device"))
    finally:
        dbapi.set_trace_callback(None)
    loop_thread = threading.get_ident()
    statements = [s for s, _ in seen]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT", statements
    assert "INSERT" in statements
    by_statement = {s: t for s, t in seen}
    assert by_statement["INSERT"] == loop_thread
    assert by_statement["BEGIN"] != loop_thread and by_statement["COMMIT"] != loop_thread
    async with sqlite_store.read() as q:
        assert (await q.entities.get("e1")) is not None


async def test_a_failing_block_writes_nothing_and_a_failed_insert_keeps_the_rest(sqlite_store: Store) -> None:
    with pytest.raises(GatewayError):
        async with sqlite_store.transaction() as q:
            await q.entities.insert(EndEntityRecord(id="a", name="a", kind="device"))
            raise Conflict("the caller gives up")
    async with sqlite_store.transaction() as q:
        await q.entities.insert(EndEntityRecord(id="b", name="b", kind="device", protocol_config="cfg"))
        dbapi = q.connection.sync_connection.connection.dbapi_connection  # type: ignore[attr-defined]
        seen: list[str] = []
        dbapi.set_trace_callback(seen.append)
        try:
            with pytest.raises(Conflict):  # same name in the same configuration: SQLite backs out this insert only
                await q.entities.insert(EndEntityRecord(id="c", name="b", kind="device", protocol_config="cfg"))
        finally:
            dbapi.set_trace_callback(None)
        assert [sql.split()[0].upper() for sql in seen] == ["INSERT"], seen  # no SAVEPOINT / RELEASE
        await q.entities.insert(EndEntityRecord(id="d", name="d", kind="device"))
    async with sqlite_store.read() as q:
        assert [await q.entities.get(i) is not None for i in "abcd"] == [False, True, False, True]


async def test_writers_of_one_process_take_turns_and_all_commit(sqlite_store: Store) -> None:
    async with sqlite_store.transaction() as q:
        await q.connection.execute(text("CREATE TABLE tally (n INTEGER NOT NULL)"))
        await q.connection.execute(text("INSERT INTO tally VALUES (0)"))

    async def bump() -> None:
        async with sqlite_store.transaction() as q:  # read, yield to the loop, write
            n = (await q.connection.execute(text("SELECT n FROM tally"))).scalar_one()
            await asyncio.sleep(0)
            await q.connection.execute(text("UPDATE tally SET n = :n"), {"n": n + 1})

    await asyncio.gather(*(bump() for _ in range(25)))
    async with sqlite_store.read() as q:
        assert (await q.connection.execute(text("SELECT n FROM tally"))).scalar_one() == 25

"""Prepared point reads (gateway/store/direct_reads.py): the bare-driver path on SQLite
must give exactly what SQLAlchemy gives, and the store's errors, on both engines."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, bindparam, event, func, select

from gateway.errors import GatewayError
from gateway.store import Store, schema
from gateway.store.direct_reads import PreparedRead
from gateway.store.records import EndEntityRecord

from .conftest import fresh_pg_database

_e = schema.end_entities.c
BY_NAME_SINCE = PreparedRead(
    select(schema.end_entities).where(_e.name == bindparam("name"), _e.created_at >= bindparam("since"))
    .order_by(_e.id)
)
T0 = dt.datetime(2026, 12, 4, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)


async def test_rows_match_sqlalchemy_with_json_datetimes_and_nulls(store: Store) -> None:
    async with store.transaction() as q:
        await q.entities.insert(EndEntityRecord(
            id="e1", name="printer", kind="device", protocol_config="scep1",
            attributes={"serial": "A-1", "tags": ["x", 2], "nested": {"ok": True}},
            created_at=T0, updated_at=T0 + dt.timedelta(seconds=1)))
        await q.entities.insert(EndEntityRecord(id="e2", name="printer", kind="device", protocol_config=None,
                                                created_at=T0 + dt.timedelta(minutes=5), updated_at=T0))
        await q.entities.insert(EndEntityRecord(id="e3", name="printer", kind="device", protocol_config="old",
                                                created_at=T0 - dt.timedelta(days=1), updated_at=T0))
    params = {"name": "printer", "since": T0}
    direct = await store.read_rows(BY_NAME_SINCE, params, "end entities")
    async with store.read() as q:
        expected = [dict(r._mapping) for r in (await q.connection.execute(BY_NAME_SINCE.statement, params)).all()]
    assert [dict(r._mapping) for r in direct] == expected
    assert [r.id for r in direct] == ["e1", "e2"]  # the datetime parameter was bound as the column stores it
    first = direct[0]
    assert first.attributes == {"serial": "A-1", "tags": ["x", 2], "nested": {"ok": True}}
    assert first.created_at == T0 and first.created_at.tzinfo is not None
    assert direct[1].protocol_config is None
    with pytest.raises(AttributeError):
        first.no_such_column  # noqa: B018


async def test_a_failing_read_is_the_same_store_error_and_the_next_one_works(store: Store) -> None:
    missing = Table("no_such_table", MetaData(), Column("id", String))
    prepared = PreparedRead(select(missing).where(missing.c.id == bindparam("id")))
    with pytest.raises(GatewayError) as direct:
        await store.read_rows(prepared, {"id": "x"}, "nothing")
    with pytest.raises(GatewayError) as through_sqlalchemy:
        async with store.read() as q:
            with store.translated("nothing"):
                await q.connection.execute(prepared.statement, {"id": "x"})
    assert (direct.value.kind, direct.value.detail) == (through_sqlalchemy.value.kind, through_sqlalchemy.value.detail)
    async with store.transaction() as q:
        await q.entities.insert(EndEntityRecord(id="e9", name="after", kind="device", created_at=T0, updated_at=T0))
    assert [r.id for r in await store.read_rows(BY_NAME_SINCE, {"name": "after", "since": T0}, "end entities")] == ["e9"]


async def test_the_config_generation_read_sees_other_connections_commits(store: Store) -> None:
    before = await store.config_generation_now()
    async with store.transaction() as q:
        await q.generations.bump()
    assert await store.config_generation_now() == before + 1


async def test_literals_and_limits_inside_the_statement_are_bound_too(store: Store) -> None:
    async with store.transaction() as q:
        for i, status in enumerate(("active", "inactive", "active")):
            await q.entities.insert(EndEntityRecord(id=f"l{i}", name=f"lit-{i}", kind="device", status=status,
                                                    created_at=T0, updated_at=T0))
    first_active = PreparedRead(select(_e.id).where(_e.status == "active", _e.name.like("lit-%"))
                                .order_by(_e.id).limit(1))
    assert [r.id for r in await store.read_rows(first_active, {}, "end entities")] == ["l0"]


def test_an_in_list_is_refused_when_prepared() -> None:
    with pytest.raises(ValueError, match="IN list"):
        PreparedRead(select(_e.id).where(_e.id.in_(bindparam("ids", expanding=True))))


async def test_on_postgresql_reads_are_not_wrapped_in_a_transaction() -> None:
    """At READ COMMITTED a transaction around reads adds only round trips: point reads and
    read blocks run in autocommit mode (SQLAlchemy's asyncpg adapter then sends no BEGIN
    and no ROLLBACK); write transactions keep theirs."""
    probe = PreparedRead(select(func.pg_backend_pid().label("probe")))
    modes: list[str | None] = []

    def seen(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "pg_backend_pid" in statement:
            modes.append(conn.get_execution_options().get("isolation_level"))

    async with fresh_pg_database("test_point_reads") as url:  # fails under CI=true, skips elsewhere
        async with await Store.open(url) as store:
            # the write engine is the read engine with options: it shares the read engine's events
            event.listen(store.sync_engines[0], "before_cursor_execute", seen)
            for _ in range(2):  # the pooled connection goes back in its usual mode
                assert (await store.read_rows(probe, {}, "probe"))[0].probe > 0
                async with store.read() as q:
                    assert await q.connection.scalar(probe.statement) > 0
                async with store.transaction() as q:
                    assert await q.connection.scalar(probe.statement) > 0
                    assert q.connection.sync_connection.connection.dbapi_connection._transaction is not None
    assert modes == ["AUTOCOMMIT", "AUTOCOMMIT", None] * 2

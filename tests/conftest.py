"""Shared test fixtures, one section per subsystem."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from gateway.store import Store

# ======================================================================================
# Store (gateway.store): every store test runs on SQLite and on a real PostgreSQL.
#
# PostgreSQL: GATEWAY_TEST_PG_URL (default below, trust auth). Each test gets a fresh
# schema, dropped afterwards. If the server is unreachable the PostgreSQL variants
# skip, except under CI=true where they fail: CI must test both engines.
# ======================================================================================

PG_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

StoreFactory = Callable[[], Awaitable["Store"]]


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _require_postgres() -> None:
    try:
        await _pg_admin("SELECT 1")
    except Exception as exc:  # any failure to reach the server
        message = f"PostgreSQL at {PG_URL} unreachable: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.asynccontextmanager
async def fresh_pg_database(prefix: str) -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards (fails under CI=true
    when PostgreSQL is unreachable, skips elsewhere)."""
    import secrets

    await _require_postgres()
    name = f"{prefix}_{secrets.token_hex(6)}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_factory(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StoreFactory]:
    """Opens Stores on one fresh database (same file / schema for every call)."""
    from gateway.store import Store

    opened: list[Store] = []
    schema: str | None = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        await _require_postgres()
        url = PG_URL
        schema = f"test_{uuid.uuid4().hex[:16]}"

    async def open_store() -> Store:
        store = await Store.open(url, schema=schema)
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.close()
        if schema is not None:
            await _pg_admin(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    """A migrated, empty Store (SQLite and PostgreSQL)."""
    return await store_factory()

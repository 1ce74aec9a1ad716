"""LastUpdateTime per CEP endpoint on SQLite and PostgreSQL: a digest keeps its time, a new
digest takes the clock's, concurrent callers agree on one."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace
from typing import Any

from gateway.clock import FakeClock
from gateway.door import ProtocolTables
from gateway.store import Store
from protocols.windows import versions

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def door_on(store: Store, clock: FakeClock) -> Any:
    """What versions.py uses of a Door (its tables and its clock), over a bare Store."""
    tables = ProtocolTables(SimpleNamespace(store=store, config=SimpleNamespace(store_has_replicas=True)))  # type: ignore[arg-type]
    return SimpleNamespace(tables=tables, clock=clock)


async def test_a_digest_keeps_its_time_and_a_new_one_moves_it(store: Store) -> None:
    clock = FakeClock(T0)
    door = door_on(store, clock)
    assert await versions.last_update_time(door, "w", "username", "a" * 64) == T0
    clock.advance(3600)
    assert await versions.last_update_time(door, "w", "username", "a" * 64) == T0  # unchanged policy
    assert await versions.last_update_time(door, "w", "certificate", "a" * 64) == T0 + dt.timedelta(hours=1)
    clock.advance(3600)
    assert await versions.last_update_time(door, "w", "username", "b" * 64) == T0 + dt.timedelta(hours=2)
    assert await versions.last_update_time(door, "other", "username", "a" * 64) == T0 + dt.timedelta(hours=2)


async def test_concurrent_first_requests_agree(store: Store) -> None:
    door = door_on(store, FakeClock(T0))
    times = await asyncio.gather(*[versions.last_update_time(door, "w", "username", "c" * 64) for _ in range(6)])
    assert set(times) == {T0}

"""``LastUpdateTime`` per CEP endpoint (MS-XCEP 3.1.1), moved when the policy's digest moves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from gateway.door import Door

from .schema import policy_versions as t

c = t.c


async def last_update_time(door: Door, config_id: str, endpoint: str, digest: str) -> dt.datetime:
    """When the policy ``digest`` describes was first served at (config, endpoint); a new
    digest takes the current time. Concurrent callers with one digest agree on one time."""
    where = and_(c.config_id == config_id, c.endpoint == endpoint)
    async with door.tables.read() as conn:
        row = (await conn.execute(select(c.digest, c.updated_at).where(where))).first()
    if row is not None and row.digest == digest:
        return row.updated_at  # type: ignore[no-any-return]
    now = door.clock()
    insert: Any = postgresql.insert if door.tables.dialect == "postgresql" else sqlite.insert
    async with door.tables.transaction() as conn:
        await conn.execute(insert(t).values(config_id=config_id, endpoint=endpoint, digest=digest, updated_at=now)
                           .on_conflict_do_nothing(index_elements=[c.config_id, c.endpoint]))
        await conn.execute(update(t).where(where, c.digest != digest).values(digest=digest, updated_at=now))
        stored = (await conn.execute(select(c.updated_at).where(where))).scalar_one()
    return stored  # type: ignore[no-any-return]

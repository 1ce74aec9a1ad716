"""Console sessions: a random token in a ``Secure; HttpOnly; SameSite=Strict`` cookie,
kept hashed in the store (so every worker and replica sees it), with a CSRF token of
its own, an idle timeout and an absolute lifetime."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from ..clock import Clock
from ..errors import Unauthorized
from ..secrets import new_token
from ..store import Store
from ..store.schema import console_sessions as _s, console_users as _u

if TYPE_CHECKING:
    from ..runtime import Gateway

IDLE_TIMEOUT = dt.timedelta(minutes=15)
MAX_LIFETIME = dt.timedelta(hours=12)
TOUCH_RESOLUTION = dt.timedelta(seconds=30)
"""``last_seen`` is written at most this often (a page is several requests)."""


@dataclass(frozen=True)
class Session:
    token_sha256: str
    username: str
    role: str
    csrf: str

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sessions_for(gateway: "Gateway") -> "Sessions":
    """The sessions with the configured timeouts (``[console]``)."""
    config = gateway.config
    return Sessions(gateway.store, gateway.clock, idle=config.console_duration("idle_timeout"),
                    lifetime=config.console_duration("session_lifetime"))


class Sessions:
    def __init__(self, store: Store, clock: Clock, *, idle: dt.timedelta = IDLE_TIMEOUT,
                 lifetime: dt.timedelta = MAX_LIFETIME) -> None:
        self._store = store
        self._clock = clock
        self.idle = idle
        self.lifetime = lifetime

    async def start(self, username: str) -> tuple[str, str]:
        """A new session: (cookie token, CSRF token)."""
        token, csrf, now = new_token(), new_token(), self._clock()
        async with self._store.transaction() as q:
            await q.connection.execute(delete(_s).where(_s.c.expires_at < now))  # tidy as we go
            await q.connection.execute(_s.insert().values(
                token_sha256=_digest(token), username=username, csrf=csrf, created_at=now, last_seen=now,
                expires_at=now + self.lifetime))
        return token, csrf

    async def find(self, token: str | None) -> Session:
        """The live session of ``token``; Unauthorized if none, idle too long or expired."""
        if not token:
            raise Unauthorized("not signed in")
        digest, now = _digest(token), self._clock()
        stmt = (select(_s.c.token_sha256, _s.c.username, _s.c.csrf, _s.c.last_seen, _s.c.expires_at, _u.c.role)
                .join(_u, _u.c.username == _s.c.username).where(_s.c.token_sha256 == digest))
        async with self._store.read() as q:
            with self._store.translated("console session"):
                row = (await q.connection.execute(stmt)).first()
        if row is None:
            raise Unauthorized("not signed in")
        if row.expires_at <= now or row.last_seen + self.idle <= now:
            await self.end(token)
            raise Unauthorized("the session has timed out: sign in again")
        if now - row.last_seen >= TOUCH_RESOLUTION:
            async with self._store.transaction() as q:
                await q.connection.execute(update(_s).where(_s.c.token_sha256 == digest).values(last_seen=now))
        return Session(row.token_sha256, row.username, row.role, row.csrf)

    async def end(self, token: str) -> None:
        async with self._store.transaction() as q:
            await q.connection.execute(delete(_s).where(_s.c.token_sha256 == _digest(token)))

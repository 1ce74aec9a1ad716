"""Console users: a name, a role, a password (scrypt, with lockout) and optionally a
TLS client certificate that logs in without a password.

The password is an enrollment credential of protocol ``console`` (gateway.credentials:
hashing, constant-cost refusal of unknown names, lockout after repeated failures);
``console_users`` adds the role and the certificate fingerprint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from ..clock import Clock
from ..credentials import Credentials, IssuedCredential, check_username
from ..errors import BadRequest, Conflict, NotFound, Unauthorized
from ..events import EventRecorder
from ..store import Store
from ..store.schema import console_users as _t
from ..admin.roles import ROLES

PROTOCOL = CONFIG_ID = "console"
_c = _t.c


@dataclass(frozen=True)
class ConsoleUser:
    username: str
    role: str
    cert_sha256: str | None
    created_at: dt.datetime
    created_by: str | None


def certificate_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class ConsoleUsers:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._events = EventRecorder(store)
        self.passwords = Credentials(store, self._events, clock, PROTOCOL)

    async def add(self, username: str, role: str, *, password: str | None = None,
                  certificate_der: bytes | None = None, actor: str) -> IssuedCredential:
        """A new user; the password is generated when none is given and returned once."""
        name = check_username(username)
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        fingerprint = certificate_fingerprint(certificate_der) if certificate_der else None
        async with self._store.transaction() as q:
            with self._store.translated(f"console user {name!r}"):
                exists = (await q.connection.execute(select(_c.username).where(_c.username == name))).first()
                if exists is not None:
                    raise Conflict(f"console user {name!r} exists")
                await q.connection.execute(_t.insert().values(
                    username=name, role=role, cert_sha256=fingerprint, created_at=self._clock(), created_by=actor))
        try:
            issued = await self.passwords.create_user(CONFIG_ID, name, password, actor=actor)
        except BaseException:
            async with self._store.transaction() as q:
                await q.connection.execute(delete(_t).where(_c.username == name))
            raise
        await self._events.record("console_user_create", "success", actor=actor, username=name, role=role,
                                  certificate=fingerprint)
        return issued

    async def get(self, username: str) -> ConsoleUser | None:
        async with self._store.read() as q:
            with self._store.translated("console user"):
                row = (await q.connection.execute(select(_t).where(_c.username == username))).first()
        return None if row is None else ConsoleUser(row.username, row.role, row.cert_sha256, row.created_at,
                                                    row.created_by)

    async def list(self) -> tuple[ConsoleUser, ...]:
        async with self._store.read() as q:
            with self._store.translated("console users"):
                rows = (await q.connection.execute(select(_t).order_by(_c.username))).all()
        return tuple(ConsoleUser(r.username, r.role, r.cert_sha256, r.created_at, r.created_by) for r in rows)

    async def set_role(self, username: str, role: str, *, actor: str) -> None:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        async with self._store.transaction() as q:
            done = (await q.connection.execute(update(_t).where(_c.username == username).values(role=role))).rowcount
        if not done:
            raise NotFound(f"no console user {username!r}")
        await self._events.record("console_user_role", "success", actor=actor, username=username, role=role)

    async def remove(self, username: str, *, actor: str) -> None:
        info = await self.passwords.find_user(CONFIG_ID, username)
        async with self._store.transaction() as q:
            done = (await q.connection.execute(delete(_t).where(_c.username == username))).rowcount
        if not done:
            raise NotFound(f"no console user {username!r}")
        if info is not None:
            await self.passwords.delete(CONFIG_ID, info.id, actor=actor)
        await self._events.record("console_user_delete", "success", actor=actor, username=username)

    async def login(self, username: str, password: str) -> ConsoleUser:
        """The user, if the password is right (Unauthorized, LockedOut otherwise)."""
        await self.passwords.verify(CONFIG_ID, username, password)
        user = await self.get(username)
        if user is None:  # a password without a console user row: not a console login
            raise Unauthorized("wrong user name or password")
        return user

    async def by_certificate(self, der: bytes) -> ConsoleUser:
        fingerprint = certificate_fingerprint(der)
        async with self._store.read() as q:
            with self._store.translated("console user"):
                row = (await q.connection.execute(select(_t).where(_c.cert_sha256 == fingerprint))).first()
        if row is None:
            raise Unauthorized("this client certificate is not registered for a console user")
        return ConsoleUser(row.username, row.role, row.cert_sha256, row.created_at, row.created_by)

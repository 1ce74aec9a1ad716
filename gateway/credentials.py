"""Enrollment credentials: the users and shared secrets protocols check before enrolling.

One store for what used to live in two places (SCEP challenge admins in
``scep_secrets``, EST Basic users in configuration JSON) and what comes next
(WS-Security UsernameToken, MDM enrollment credentials). Each record belongs to one
protocol configuration and is one of two kinds:

- ``user``: a user name and a password (HTTP Basic, UsernameToken);
- ``shared-secret``: a secret without a name (a SCEP static challenge).

Secrets are stored only as scrypt hashes (:func:`gateway.secrets.hash_secret`: salt
and cost parameters travel inside the hash string); a generated secret is returned
once, when it is created, and never again. Listings never carry hashes.

Lockout: every failed check adds one to the credential's failure counter, in the
table, with a conditional ``UPDATE`` (``failures = failures + 1 ... WHERE`` not
locked), so the count is exact however many workers or replicas see the attempts.
The update that reaches ``max_failures`` also sets ``locked_until = now + period``;
until then the credential is refused without checking the password, and once the
period has passed the next failure starts a new count. A success resets the
counter. A wrong shared secret cannot tell which secret it was aimed at, so it
counts against every open shared secret of the configuration. Attempts already
past the check when the lock commits cannot succeed after it: the success update
is conditional on the row still being unlocked (and unchanged). Call sites choose
their own :class:`LockoutPolicy` (a shared secret sent by unauthenticated devices
may want a larger limit, or none: every wrong guess would otherwise lock out the
devices that know it).

User names (:func:`check_username`): 2-64 characters after Unicode NFC
normalisation, printable (no control or format characters, no line breaks, no
non-ASCII spaces), no ``:`` (RFC 7617: a Basic user-id cannot hold one) and no
space at either end. Compared exactly, case-sensitively.

Timing: an unknown or disabled user name costs the same scrypt as a wrong password
(a dummy hash is checked); hashes are compared in constant time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets as pysecrets
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, Sequence

from sqlalchemy import ColumnElement, and_, case, delete, literal, null, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from .clock import Clock
from .columns import UTCDateTime
from .edge.basic import parse_basic
from .errors import BadRequest, Conflict, NotFound, Unauthorized
from .events import EventRecorder
from .secrets import hash_secret, new_token, verify_secret
from .store import Store
from .store.schema import enrollment_credentials as _t

__all__ = [
    "USER", "SHARED_SECRET", "CredentialKind", "LockoutPolicy", "DEFAULT_LOCKOUT", "NO_LOCKOUT",
    "CredentialInfo", "IssuedCredential", "LockedOut", "Credentials", "check_username", "check_secret",
]

USER: Literal["user"] = "user"
SHARED_SECRET: Literal["shared-secret"] = "shared-secret"
CredentialKind = Literal["user", "shared-secret"]
KINDS: frozenset[str] = frozenset({USER, SHARED_SECRET})

USERNAME_MIN, USERNAME_MAX = 2, 64
SECRET_MIN, SECRET_MAX = 8, 1024  # chosen secrets; generated ones are 24 characters
GENERATED_SECRET_BYTES = 18
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
"""``last_used_at`` is refreshed at most this often: a device authenticating on every
request must not turn each request into a write."""

USER_REFUSED = "wrong user name or password"
SECRET_REFUSED = "wrong secret"
LOCKED = "too many failed attempts: try again later"

_c = _t.c
_INFO_COLUMNS = tuple(col for col in _t.columns if col.name != "secret_hash")


@dataclass(frozen=True)
class LockoutPolicy:
    """After ``max_failures`` consecutive failures, refuse for ``period``.
    ``max_failures=None`` counts failures but never locks."""

    max_failures: int | None = 5
    period: dt.timedelta = dt.timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError("max_failures must be at least 1 (or None: never lock)")
        if self.period <= dt.timedelta(0):
            raise ValueError("the lockout period must be positive")


DEFAULT_LOCKOUT = LockoutPolicy()
NO_LOCKOUT = LockoutPolicy(max_failures=None)


@dataclass(frozen=True)
class CredentialInfo:
    """A credential as listings show it: everything but the hash."""

    id: str
    protocol: str
    config_id: str
    kind: CredentialKind
    username: str | None
    label: str | None
    created_at: dt.datetime
    created_by: str | None
    disabled: bool
    failures: int
    locked_until: dt.datetime | None
    last_used_at: dt.datetime | None

    def locked(self, now: dt.datetime) -> bool:
        return _locked(self.locked_until, now)


@dataclass(frozen=True)
class IssuedCredential:
    """A credential just created or given a new secret, with that secret in clear:
    shown to the operator once, stored only hashed."""

    credential: CredentialInfo
    secret: str = field(repr=False)


class LockedOut(Unauthorized):
    """Refused without a check: too many consecutive failures, until ``until``."""

    def __init__(self, detail: str = LOCKED, *, until: dt.datetime) -> None:
        super().__init__(detail)
        self.until = until


def check_username(username: str) -> str:
    """The user name in its stored form (NFC), or BadRequest (rule in the module docstring)."""
    name = unicodedata.normalize("NFC", username)
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        raise BadRequest(f"a user name is {USERNAME_MIN}-{USERNAME_MAX} characters")
    if ":" in name:
        raise BadRequest("a user name cannot contain ':'")
    if not name.isprintable() or name != name.strip():
        raise BadRequest("a user name holds printable characters only, without spaces at either end")
    return name


def check_secret(secret: str) -> str:
    """A chosen password or shared secret, or BadRequest (8-1024 characters)."""
    if not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise BadRequest(f"a password or secret is {SECRET_MIN}-{SECRET_MAX} characters")
    return secret


def _locked(locked_until: dt.datetime | None, now: dt.datetime) -> bool:
    return locked_until is not None and locked_until > now


def _unlocked_at(now: dt.datetime) -> ColumnElement[bool]:
    return or_(_c.locked_until.is_(None), _c.locked_until <= now)


def _info(row: Row[Any]) -> CredentialInfo:
    m = row._mapping
    return CredentialInfo(
        id=m["id"], protocol=m["protocol"], config_id=m["protocol_config"], kind=m["kind"],
        username=m["username"], label=m["label"], created_at=m["created_at"], created_by=m["created_by"],
        disabled=m["disabled"], failures=m["failures"], locked_until=m["locked_until"],
        last_used_at=m["last_used_at"],
    )


def _checked_hash(secret_hash: str) -> str:
    parts = secret_hash.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        raise BadRequest("not a scrypt hash from gateway.secrets.hash_secret")
    return secret_hash


class Credentials:
    """The enrollment credentials of one protocol; every verb names the configuration.

    Built per gateway (``Door.credentials``); holds no state but a dummy hash, so any
    number of workers can share the table.
    """

    def __init__(self, store: Store, events: EventRecorder, clock: Clock, protocol: str, *,
                 lockout: LockoutPolicy = DEFAULT_LOCKOUT) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self.protocol = protocol
        self.lockout = lockout
        self._dummy_hash: str | None = None

    # --- reading -------------------------------------------------------------------------
    async def list(self, config_id: str, *, kind: CredentialKind | None = None) -> tuple[CredentialInfo, ...]:
        """The configuration's credentials, users by name then shared secrets by age."""
        where = [self._scope(config_id)]
        if kind is not None:
            where.append(_c.kind == kind)
        stmt = select(*_INFO_COLUMNS).where(*where).order_by(_c.kind.desc(), _c.username, _c.created_at, _c.id)
        async with self._store.read() as q:
            with self._store.translated("enrollment credentials"):
                rows = (await q.connection.execute(stmt)).all()
        return tuple(_info(r) for r in rows)

    async def get(self, config_id: str, credential_id: str) -> CredentialInfo | None:
        stmt = select(*_INFO_COLUMNS).where(self._scope(config_id), _c.id == credential_id)
        async with self._store.read() as q:
            with self._store.translated("enrollment credential"):
                row = (await q.connection.execute(stmt)).first()
        return None if row is None else _info(row)

    async def find_user(self, config_id: str, username: str) -> CredentialInfo | None:
        try:
            name = check_username(username)
        except BadRequest:
            return None
        stmt = select(*_INFO_COLUMNS).where(self._scope(config_id), _c.kind == USER, _c.username == name)
        async with self._store.read() as q:
            with self._store.translated("enrollment credential"):
                row = (await q.connection.execute(stmt)).first()
        return None if row is None else _info(row)

    # --- creating and changing -------------------------------------------------------------
    async def create_user(
        self, config_id: str, username: str, password: str | None = None, *, label: str | None = None,
        actor: str | None = None, replace: bool = False,
    ) -> IssuedCredential:
        """A new user; the password is generated when none is given and returned once.

        ``replace``: an existing user of that name gets the new password instead
        (failures and lockout cleared, disabled state and label kept unless a label
        is given); otherwise an existing name is a Conflict.
        """
        name = check_username(username)
        value = check_secret(password) if password is not None else new_token(GENERATED_SECRET_BYTES)
        secret_hash = await asyncio.to_thread(hash_secret, value)
        now = self._clock()
        what = f"user {name!r}"
        async with self._store.transaction() as q:
            conn = q.connection
            with self._store.translated(what):
                existing = None
                if replace:
                    existing = (await conn.execute(select(_c.id).where(
                        self._scope(config_id), _c.kind == USER, _c.username == name))).first()
                if existing is not None:
                    values: dict[str, Any] = {"secret_hash": secret_hash, "failures": 0, "locked_until": None}
                    if label is not None:
                        values["label"] = label
                    row = (await conn.execute(update(_t).where(_c.id == existing.id).values(**values)
                                              .returning(*_INFO_COLUMNS))).one()
                else:
                    row = await self._insert(conn, config_id, USER, name, secret_hash, label, actor, now)
        info = _info(row)
        await self._audit("credential_password" if existing is not None else "credential_create", info, actor)
        return IssuedCredential(info, value)

    async def set_password(self, config_id: str, username: str, password: str | None = None, *,
                           actor: str | None = None) -> str:
        """A new password for an existing user (generated when none is given; returned
        once). Clears failures and any lockout."""
        name = check_username(username)
        value = check_secret(password) if password is not None else new_token(GENERATED_SECRET_BYTES)
        secret_hash = await asyncio.to_thread(hash_secret, value)
        stmt = (update(_t).where(self._scope(config_id), _c.kind == USER, _c.username == name)
                .values(secret_hash=secret_hash, failures=0, locked_until=None).returning(*_INFO_COLUMNS))
        async with self._store.transaction() as q:
            with self._store.translated(f"user {name!r}"):
                row = (await q.connection.execute(stmt)).first()
        if row is None:
            raise NotFound(f"no user {name!r} in {self.protocol} configuration {config_id!r}")
        await self._audit("credential_password", _info(row), actor)
        return value

    async def create_secret(
        self, config_id: str, secret: str | None = None, *, label: str | None = None,
        actor: str | None = None, replace: bool = False,
    ) -> IssuedCredential:
        """A new shared secret (generated when none is given; returned once).
        ``replace``: the configuration's other shared secrets are deleted in the same
        transaction (one static challenge), else they stay valid beside it (rotation)."""
        value = check_secret(secret) if secret is not None else new_token(GENERATED_SECRET_BYTES)
        secret_hash = await asyncio.to_thread(hash_secret, value)
        now = self._clock()
        replaced = 0
        async with self._store.transaction() as q:
            conn = q.connection
            with self._store.translated("shared secret"):
                if replace:
                    replaced = (await conn.execute(delete(_t).where(
                        self._scope(config_id), _c.kind == SHARED_SECRET))).rowcount
                row = await self._insert(conn, config_id, SHARED_SECRET, None, secret_hash, label, actor, now)
        info = _info(row)
        await self._audit("credential_create", info, actor, replaced=replaced or None)
        return IssuedCredential(info, value)

    async def import_hash(
        self, config_id: str, kind: CredentialKind, secret_hash: str, *, username: str | None = None,
        label: str | None = None, actor: str | None = None,
    ) -> CredentialInfo:
        """Adopt a credential whose scrypt hash already exists (moving SCEP's
        ``scep_secrets`` and EST's configuration users here): nobody re-enters a secret.
        An existing user of that name is a Conflict."""
        if kind not in KINDS:
            raise BadRequest(f"unknown credential kind {kind!r}")
        name: str | None = None
        if kind == USER:
            if username is None:
                raise BadRequest("a user credential needs a user name")
            name = check_username(username)
        elif username is not None:
            raise BadRequest("a shared secret has no user name")
        _checked_hash(secret_hash)
        now = self._clock()
        async with self._store.transaction() as q:
            with self._store.translated(f"user {name!r}" if name is not None else "shared secret"):
                row = await self._insert(q.connection, config_id, kind, name, secret_hash, label, actor, now)
        info = _info(row)
        await self._audit("credential_create", info, actor, imported=True)
        return info

    async def disable(self, config_id: str, credential_id: str, *, actor: str | None = None) -> CredentialInfo:
        """Refused from now on (kept for the record; :meth:`enable` brings it back)."""
        info = await self._change(config_id, credential_id, disabled=True)
        await self._audit("credential_disable", info, actor)
        return info

    async def enable(self, config_id: str, credential_id: str, *, actor: str | None = None) -> CredentialInfo:
        info = await self._change(config_id, credential_id, disabled=False)
        await self._audit("credential_enable", info, actor)
        return info

    async def unlock(self, config_id: str, credential_id: str, *, actor: str | None = None) -> CredentialInfo:
        """End a lockout now and clear the failure counter (an operator's decision)."""
        info = await self._change(config_id, credential_id, failures=0, locked_until=None)
        await self._audit("credential_unlock", info, actor)
        return info

    async def delete(self, config_id: str, credential_id: str, *, actor: str | None = None) -> None:
        stmt = delete(_t).where(self._scope(config_id), _c.id == credential_id).returning(*_INFO_COLUMNS)
        async with self._store.transaction() as q:
            with self._store.translated("enrollment credential"):
                row = (await q.connection.execute(stmt)).first()
        if row is None:
            raise self._missing(config_id, credential_id)
        await self._audit("credential_delete", _info(row), actor)

    # --- checking ----------------------------------------------------------------------------
    async def verify(self, config_id: str, username: str, password: str, *,
                     lockout: LockoutPolicy | None = None) -> CredentialInfo:
        """The user, when the password is right and the user enabled and not locked.
        Unauthorized otherwise (:class:`LockedOut` while locked)."""
        try:
            name: str | None = check_username(username)
        except BadRequest:
            name = None
        row = None
        if name is not None:
            stmt = select(_t).where(self._scope(config_id), _c.kind == USER, _c.username == name)
            async with self._store.read() as q:
                with self._store.translated("enrollment credential"):
                    row = (await q.connection.execute(stmt)).first()
        now = self._clock()
        if row is None or row.disabled:
            await self._waste_a_check(password)
            raise Unauthorized(USER_REFUSED)
        if _locked(row.locked_until, now):
            raise LockedOut(until=row.locked_until)
        if await asyncio.to_thread(verify_secret, password, row.secret_hash):
            return await self._succeeded(row, now, USER_REFUSED)
        await self._failed([row.id], now, lockout or self.lockout, USER_REFUSED)

    async def verify_basic(self, config_id: str, header: str | None, *, lockout: LockoutPolicy | None = None,
                           latin1_fallback: bool = False) -> CredentialInfo:
        """:meth:`verify` of the credentials in an ``Authorization: Basic`` header."""
        creds = parse_basic(header, latin1_fallback=latin1_fallback)
        return await self.verify(config_id, creds.username, creds.password, lockout=lockout)

    async def verify_secret(self, config_id: str, secret: str, *,
                            lockout: LockoutPolicy | None = None) -> CredentialInfo:
        """The enabled, unlocked shared secret of the configuration that ``secret`` matches.
        Unauthorized otherwise (:class:`LockedOut` when every one is locked)."""
        stmt = (select(_t).where(self._scope(config_id), _c.kind == SHARED_SECRET, _c.disabled.is_(False))
                .order_by(_c.created_at, _c.id))
        async with self._store.read() as q:
            with self._store.translated("shared secrets"):
                rows = (await q.connection.execute(stmt)).all()
        now = self._clock()
        if not rows:
            await self._waste_a_check(secret)
            raise Unauthorized(SECRET_REFUSED)
        open_rows = [r for r in rows if not _locked(r.locked_until, now)]
        if not open_rows:
            raise LockedOut(until=min(r.locked_until for r in rows))
        for row in open_rows:
            if await asyncio.to_thread(verify_secret, secret, row.secret_hash):
                return await self._succeeded(row, now, SECRET_REFUSED)
        await self._failed([r.id for r in open_rows], now, lockout or self.lockout, SECRET_REFUSED)

    # --- internals ---------------------------------------------------------------------------
    def _scope(self, config_id: str) -> ColumnElement[bool]:
        return and_(_c.protocol == self.protocol, _c.protocol_config == config_id)

    def _missing(self, config_id: str, credential_id: str) -> NotFound:
        return NotFound(f"no credential {credential_id!r} in {self.protocol} configuration {config_id!r}")

    async def _insert(self, conn: AsyncConnection, config_id: str, kind: str, username: str | None, secret_hash: str,
                      label: str | None, actor: str | None, now: dt.datetime) -> Row[Any]:
        values = {
            "id": "cred_" + pysecrets.token_hex(12), "protocol": self.protocol, "protocol_config": config_id,
            "kind": kind, "username": username, "secret_hash": secret_hash, "label": label,
            "created_at": now, "created_by": actor, "disabled": False, "failures": 0,
            "locked_until": None, "last_used_at": None,
        }
        row: Row[Any] = (await conn.execute(_t.insert().values(**values).returning(*_INFO_COLUMNS))).one()
        return row

    async def _change(self, config_id: str, credential_id: str, **values: Any) -> CredentialInfo:
        stmt = (update(_t).where(self._scope(config_id), _c.id == credential_id).values(**values)
                .returning(*_INFO_COLUMNS))
        async with self._store.transaction() as q:
            with self._store.translated("enrollment credential"):
                row = (await q.connection.execute(stmt)).first()
        if row is None:
            raise self._missing(config_id, credential_id)
        return _info(row)

    async def _row(self, credential_id: str) -> Row[Any] | None:
        async with self._store.read() as q:
            with self._store.translated("enrollment credential"):
                row: Row[Any] | None = (await q.connection.execute(
                    select(_t).where(_c.id == credential_id))).first()
        return row

    async def _succeeded(self, row: Row[Any], now: dt.datetime, refused: str) -> CredentialInfo:
        """Reset the counter and note the use, unless another process locked, disabled or
        re-keyed the credential since it was read (then this success does not count)."""
        recent = row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION
        if row.failures == 0 and row.locked_until is None and recent:
            return _info(row)  # nothing to reset: no write on the hot path
        stmt = (update(_t)
                .where(_c.id == row.id, _c.disabled.is_(False), _c.secret_hash == row.secret_hash,
                       _unlocked_at(now))
                .values(failures=0, locked_until=None, last_used_at=now)
                .returning(*_INFO_COLUMNS))
        async with self._store.transaction() as q:
            with self._store.translated("enrollment credential"):
                updated = (await q.connection.execute(stmt)).first()
        if updated is not None:
            return _info(updated)
        fresh = await self._row(row.id)
        if fresh is not None and _locked(fresh.locked_until, now):
            raise LockedOut(until=fresh.locked_until)
        raise Unauthorized(refused)

    async def _failed(self, ids: Sequence[str], now: dt.datetime, policy: LockoutPolicy, refused: str) -> NoReturn:
        """Count one failure against each credential (atomically, in the table); lock
        those that reach the limit; raise."""
        expired = and_(_c.locked_until.is_not(None), _c.locked_until <= now)
        failures = case((expired, 1), else_=_c.failures + 1)  # a new count after a lockout ended
        if policy.max_failures is None:
            locked_until: Any = null()
        else:
            until = literal(now + policy.period, UTCDateTime())
            locked_until = case((failures >= policy.max_failures, until), else_=null())
        stmt = (update(_t)
                .where(_c.id.in_(list(ids)), _c.disabled.is_(False), _unlocked_at(now))
                .values(failures=failures, locked_until=locked_until)
                .returning(*_INFO_COLUMNS))
        async with self._store.transaction() as q:
            with self._store.translated("enrollment credential"):
                rows = [_info(r) for r in (await q.connection.execute(stmt)).all()]
        newly_locked = [info for info in rows if info.locked(now)]  # unlocked before this update
        for info in newly_locked:
            await self._audit("credential_lockout", info, None, status="failure", failures=info.failures,
                              locked_until=info.locked_until.isoformat() if info.locked_until else None)
        if newly_locked and len(newly_locked) == len(rows):
            raise LockedOut(until=min(i.locked_until for i in newly_locked if i.locked_until is not None))
        if not rows and len(ids) == 1:  # locked (or changed) by another process meanwhile
            fresh = await self._row(ids[0])
            if fresh is not None and _locked(fresh.locked_until, now):
                raise LockedOut(until=fresh.locked_until)
        raise Unauthorized(refused)

    async def _waste_a_check(self, secret: str) -> None:
        """One scrypt against a hash nothing matches: an unknown name costs what a known one does."""
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_secret, pysecrets.token_urlsafe(16))
        await asyncio.to_thread(verify_secret, secret, self._dummy_hash)

    async def _audit(self, type: str, info: CredentialInfo, actor: str | None, *, status: str = "success",
                     **detail: Any) -> None:
        """Identifiers only: never a secret or a hash."""
        await self._events.record(
            type, status, protocol_config=info.config_id, protocol=info.protocol, credential_id=info.id,
            kind=info.kind, username=info.username, label=info.label, actor=actor, **detail,
        )

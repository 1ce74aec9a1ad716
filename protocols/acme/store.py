"""Data access for the ACME tables, on the gateway's store (SQLite or PostgreSQL).

Each method is one transaction and as few round trips as the operation allows:
a signed request's nonce is consumed and its account loaded in one transaction, or,
for requests that write anyway, the nonce is recorded inside that write
(:class:`PendingNonce`);
a new order's rate-limit counters, authorizations, order and ARI replacement row
are written in one. State changes are compare-and-set (``UPDATE ... WHERE status
= expected``), so two replicas racing on the same order or challenge cannot both
win. Only ACME's own tables are touched here (through the door's
:class:`~gateway.door.ProtocolTables`); where a row of the core must commit with
ours (an account's end entity, an order's certificate) the core writes it through
the door on the same connection, so both appear together or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from gateway.clock import Clock, system_clock
from gateway.door import PreparedRead, ProtocolTables
from gateway.errors import Conflict, ErrorKind, GatewayError

from . import nonces, problems
from . import schema as t
from .identifiers import Identifier
from .records import Account, Authorization, Challenge, EabKey, Order
from .settings import RateLimit

log = logging.getLogger("gateway.acme")

InAccountTransaction = Callable[[AsyncConnection], Awaitable[object]]
"""Core state that commits with a new account (its end entity, registered through the door)."""

EntityStatusOn = Callable[[AsyncConnection, str], Awaitable[str | None]]
"""The core end entity's status read on the account read's connection (door.entity_status_on):
one round trip per request for both."""

EntityStatus = Callable[[str], Awaitable[str | None]]
"""The core end entity's status as a point read of its own (door.entity_status)."""


class NonceReused(GatewayError, nonces.NonceReused):
    """A nonce the store has already recorded as used (on any replica)."""

    kind = ErrorKind.BAD_REQUEST


class PendingNonce:
    """A request's authentic nonce, not yet recorded as used.

    Handlers that write pass it to their first write, which records it in the same
    transaction (one commit per request instead of two); ``used`` turns true only
    once that transaction has committed, so a rolled-back write leaves it pending
    and :meth:`AcmeStore.use_nonce` still consumes it.
    """

    __slots__ = ("value", "expires", "used")

    def __init__(self, value: str, expires: dt.datetime) -> None:
        self.value = value
        self.expires = expires
        self.used = False


# --- row <-> record -------------------------------------------------------------------
def _idents(values: list[dict[str, str]]) -> list[Identifier]:
    return [Identifier(v["type"], v["value"]) for v in values]


def _account(row: Row[Any]) -> Account:
    m = row._mapping
    return Account(
        id=m["id"], config_id=m["config_id"], thumbprint=m["thumbprint"], jwk=m["jwk"],
        entity_id=m["entity_id"], status=m["status"], contact=list(m["contact"]), tos_agreed=m["tos_agreed"],
        eab_kid=m["eab_kid"], allowed_identifiers=m["allowed_identifiers"], created_at=m["created_at"],
    )


async def _load_account(conn: AsyncConnection, config_id: str, account_id: str,
                        entity_status: EntityStatusOn | None) -> Account | None:
    row = (await conn.execute(_ACCOUNT_BY_ID, {"account_id": account_id, "config_id": config_id})).first()
    if row is None:
        return None
    account = _account(row)
    if entity_status is not None:
        account.entity_status = await entity_status(conn, account.entity_id) or "active"
    return account


def _account_values(a: Account) -> dict[str, Any]:
    return {
        "id": a.id, "config_id": a.config_id, "thumbprint": a.thumbprint, "jwk": a.jwk, "status": a.status,
        "contact": a.contact, "tos_agreed": a.tos_agreed, "eab_kid": a.eab_kid,
        "allowed_identifiers": a.allowed_identifiers, "entity_id": a.entity_id, "created_at": a.created_at,
    }


def _authz(row: Row[Any]) -> Authorization:
    m = row._mapping
    return Authorization(
        id=m["id"], config_id=m["config_id"], account_id=m["account_id"],
        identifier=Identifier(m["identifier_type"], m["identifier_value"]), wildcard=m["wildcard"],
        expires=m["expires"], challenges=[Challenge.from_json(c) for c in m["challenges"]],
        status=m["status"], attempt=m["attempt"], created_at=m["created_at"],
    )


def _authz_values(a: Authorization) -> dict[str, Any]:
    return {
        "id": a.id, "config_id": a.config_id, "account_id": a.account_id,
        "identifier_type": a.identifier.type, "identifier_value": a.identifier.value, "wildcard": a.wildcard,
        "status": a.status, "expires": a.expires, "challenges": [c.to_json() for c in a.challenges],
        "attempt": a.attempt, "created_at": a.created_at,
    }


def _order(row: Row[Any]) -> Order:
    m = row._mapping
    return Order(
        id=m["id"], config_id=m["config_id"], account_id=m["account_id"], expires=m["expires"],
        identifiers=_idents(m["identifiers"]), authz_ids=list(m["authz_ids"]), profile=m["profile"],
        status=m["status"], not_before=m["not_before"], not_after=m["not_after"], error=m["error"],
        serial=m["serial"], request_id=m["request_id"], replaces=m["replaces"], created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _order_values(o: Order) -> dict[str, Any]:
    return {
        "id": o.id, "config_id": o.config_id, "account_id": o.account_id, "status": o.status,
        "expires": o.expires, "identifiers": [i.to_json() for i in o.identifiers], "authz_ids": o.authz_ids,
        "profile": o.profile, "not_before": o.not_before, "not_after": o.not_after, "error": o.error,
        "serial": o.serial, "request_id": o.request_id, "replaces": o.replaces, "created_at": o.created_at,
        "updated_at": o.updated_at,
    }


def _eab(row: Row[Any]) -> EabKey:
    m = row._mapping
    return EabKey(
        kid=m["kid"], config_id=m["config_id"], hmac_key_encrypted=m["hmac_key_encrypted"], label=m["label"],
        created_by=m["created_by"], identifiers=m["identifiers"], account_id=m["account_id"],
        bound_at=m["bound_at"], revoked=m["revoked"], created_at=m["created_at"],
    )


# Statements every request runs, built once: a prebuilt statement keeps its SQLAlchemy
# cache key, so executing it skips construction and key generation (values are bound).
_ACCOUNT_BY_ID = select(t.accounts).where(t.accounts.c.id == bindparam("account_id"),
                                          t.accounts.c.config_id == bindparam("config_id"))
_PREPARED_ACCOUNT_BY_ID = PreparedRead(_ACCOUNT_BY_ID)
_ORDER_BY_ID = select(t.orders).where(t.orders.c.id == bindparam("order_id"),
                                      t.orders.c.config_id == bindparam("config_id"))
_AUTHZ_BY_ID = select(t.authorizations).where(t.authorizations.c.id == bindparam("authz_id"),
                                              t.authorizations.c.config_id == bindparam("config_id"))
_PREPARED_AUTHZ_BY_ID = PreparedRead(_AUTHZ_BY_ID)
_AUTHZS_BY_IDS = select(t.authorizations).where(t.authorizations.c.id.in_(bindparam("authz_ids", expanding=True)))
_a, _o = t.authorizations.c, t.orders.c
_PREPARED_LIVE_AUTHZS = PreparedRead(select(t.authorizations).where(
    _a.account_id == bindparam("account_id"), _a.config_id == bindparam("config_id"),
    _a.identifier_value == bindparam("name"), or_(_a.status == "valid", _a.status == "pending"),
    _a.expires > bindparam("valid_after"),
))
_PREPARED_ORDER_BY_ID = PreparedRead(_ORDER_BY_ID)
_ACCEPT_WITHOUT_ATTEMPT = (
    update(t.authorizations)
    .where(_a.id == bindparam("authz_id"), _a.status == "pending", _a.attempt.is_(None))
    .values(status="valid", attempt=bindparam("new_attempt"), expires=bindparam("new_expires", type_=_a.expires.type),
            challenges=bindparam("new_challenges", type_=_a.challenges.type))
)
_ORDER_ISSUED = (
    update(t.orders).where(_o.id == bindparam("order_id"), _o.status.in_(bindparam("expect", expanding=True)))
    .values(status="valid", serial=bindparam("new_serial"), updated_at=bindparam("new_updated_at", type_=_o.updated_at.type))
)


class AcmeStore:
    """The ACME tables, on the connections the door's :class:`ProtocolTables` hands out.

    ``clock`` stamps the rows written here (``updated_at``); it is the gateway's
    injected clock, so tests move time instead of sleeping.
    """

    def __init__(self, tables: ProtocolTables, clock: Clock = system_clock) -> None:
        self._tables = tables
        self.clock = clock
        self.dialect = tables.dialect

    @contextlib.asynccontextmanager
    async def _write(self, what: str, nonce: PendingNonce | None = None) -> AsyncIterator[AsyncConnection]:
        """A write transaction; records ``nonce`` first when it is still pending
        (:class:`NonceReused`, and nothing written, if another request used it)."""
        recorded = False
        async with self._tables.transaction() as conn:
            with self._tables.translated(what):
                if nonce is not None and not nonce.used:
                    await self._use_nonce(conn, nonce.value, nonce.expires)
                    recorded = True
                yield conn
        if recorded:
            assert nonce is not None
            nonce.used = True

    @contextlib.asynccontextmanager
    async def _read(self, what: str) -> AsyncIterator[AsyncConnection]:
        async with self._tables.read() as conn:
            with self._tables.translated(what):
                yield conn

    # --- nonces and authentication ----------------------------------------------------
    async def _use_nonce(self, conn: AsyncConnection, nonce: str, expires: dt.datetime) -> None:
        try:
            await conn.execute(t.used_nonces.insert(), {"nonce": nonce, "expires": expires})
        except IntegrityError:
            raise NonceReused("nonce already used") from None

    async def use_nonce(self, nonce: str, expires: dt.datetime) -> None:
        """Record a nonce as used; :class:`NonceReused` if it was used before (on any replica)."""
        async with self._write("nonce") as conn:
            await self._use_nonce(conn, nonce, expires)

    async def use_pending_nonce(self, nonce: PendingNonce) -> None:
        """Record a pending nonce that no write of its request has recorded yet."""
        async with self._write("nonce", nonce):
            pass

    async def use_pending_nonce_on(self, conn: AsyncConnection, nonce: PendingNonce) -> bool:
        """Record a pending nonce on the caller's transaction (:class:`NonceReused` if it
        was used meanwhile). True when it wrote: the caller sets ``nonce.used`` once that
        transaction has committed, not before (a rollback leaves the nonce pending)."""
        if nonce.used:
            return False
        await self._use_nonce(conn, nonce.value, nonce.expires)
        return True

    async def use_nonce_and_load_account(
        self, nonce: str, expires: dt.datetime, config_id: str, account_id: str,
        entity_status: EntityStatusOn | None = None,
    ) -> Account | None:
        """One transaction for the things every kid-signed request needs (with
        ``entity_status``, the account's end entity status too)."""
        async with self._write("nonce") as conn:
            await self._use_nonce(conn, nonce, expires)
            return await _load_account(conn, config_id, account_id, entity_status)

    # --- rate limits ----------------------------------------------------------------------
    async def _count(self, conn: AsyncConnection, key: str, limit: RateLimit, now: dt.datetime,
                     what: str) -> None:
        """Count one event against ``limit`` (fixed windows); raise rateLimited past it.

        Raising inside the caller's transaction rolls the increment back, so refused
        requests do not eat into the allowance.
        """
        period = limit.period.total_seconds()
        window = int(now.timestamp() // period)
        window_end = dt.datetime.fromtimestamp((window + 1) * period, dt.timezone.utc)
        insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        c = t.rate_counters.c
        stmt = (
            insert(t.rate_counters)
            .values(counter_key=key, window_no=window, count=1, window_end=window_end)
            .on_conflict_do_update(index_elements=[c.counter_key, c.window_no], set_={"count": c.count + 1})
            .returning(c.count)
        )
        count = int((await conn.execute(stmt)).scalar_one())
        if count > limit.count:
            retry = int((window_end - now).total_seconds()) + 1
            raise problems.rate_limited(
                f"rate limit for {what} reached ({limit.count} per {limit.period}); retry after {retry} seconds",
                retry,
            )

    # --- accounts ---------------------------------------------------------------------------
    async def account_by_thumbprint(self, config_id: str, thumbprint: str) -> Account | None:
        c = t.accounts.c
        async with self._read("account") as conn:
            row = (await conn.execute(select(t.accounts).where(c.config_id == config_id,
                                                               c.thumbprint == thumbprint))).first()
        return _account(row) if row is not None else None

    async def get_account(self, config_id: str, account_id: str,
                          entity_status: EntityStatus | None = None) -> Account | None:
        """The account (with ``entity_status``, its end entity's status too): two point
        reads, each on the bare driver where the store allows it (every request makes them)."""
        rows = await self._tables.read_rows(_PREPARED_ACCOUNT_BY_ID,
                                            {"account_id": account_id, "config_id": config_id}, "account")
        if not rows:
            return None
        account = _account(rows[0])
        if entity_status is not None:
            account.entity_status = await entity_status(account.entity_id) or "active"
        return account

    async def create_account(
        self, account: Account, *, register_entity: InAccountTransaction, limit: RateLimit | None,
        now: dt.datetime,
    ) -> None:
        """Account, its end entity and (if any) its EAB key's binding, all or nothing.

        ``register_entity`` writes the end entity (through the door) on this
        transaction's connection. Conflict if the EAB key was bound meanwhile, or an
        account with this key appeared meanwhile.
        """
        async with self._write("account") as conn:
            if limit is not None:
                await self._count(conn, f"{account.config_id}|accounts", limit, now, "new accounts")
            await register_entity(conn)
            await conn.execute(t.accounts.insert(), _account_values(account))
            if account.eab_kid is not None:
                k = t.eab_keys.c
                bound = await conn.execute(
                    update(t.eab_keys)
                    .where(k.kid == account.eab_kid, k.config_id == account.config_id,
                           k.account_id.is_(None), k.revoked.is_(False))
                    .values(account_id=account.id, bound_at=now)
                )
                if bound.rowcount != 1:
                    raise Conflict("the external account key is already bound to an account")

    async def update_account(self, account_id: str, **fields: Any) -> None:
        async with self._write("account") as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.id == account_id).values(**fields))

    async def change_key(self, account_id: str, old: str, new: str, jwk: dict[str, Any]) -> bool:
        """Compare-and-set the account key; False if it changed meanwhile."""
        c = t.accounts.c
        async with self._write("account key") as conn:
            result = await conn.execute(
                update(t.accounts).where(c.id == account_id, c.thumbprint == old, c.status == "valid")
                .values(thumbprint=new, jwk=jwk)
            )
        return result.rowcount == 1

    async def list_accounts(self, config_id: str, limit: int, offset: int) -> list[Account]:
        c = t.accounts.c
        stmt = select(t.accounts).where(c.config_id == config_id).order_by(c.created_at, c.id).limit(limit).offset(offset)
        async with self._read("accounts") as conn:
            return [_account(r) for r in (await conn.execute(stmt)).all()]

    # --- orders and authorizations ----------------------------------------------------
    async def create_order(
        self, order: Order, new_authzs: list[Authorization], *, limits: list[tuple[str, RateLimit, str]],
        replaces_serial: str | None, now: dt.datetime, nonce: PendingNonce | None = None,
    ) -> None:
        """Rate-limit counters, new authorizations, the order and its ARI claim, together.

        ``alreadyReplaced`` when another live order already replaces the same
        certificate (one that is invalid or expired gives its claim up).
        """
        async with self._write("order", nonce) as conn:
            for key, limit, what in limits:
                await self._count(conn, key, limit, now, what)
            if replaces_serial is not None:
                await self._claim_replacement(conn, replaces_serial, order.id, now)
            if new_authzs:
                await conn.execute(t.authorizations.insert(), [_authz_values(a) for a in new_authzs])
            await conn.execute(t.orders.insert(), _order_values(order))

    async def _claim_replacement(self, conn: AsyncConnection, serial: str, order_id: str, now: dt.datetime) -> None:
        r, o = t.replacements.c, t.orders.c
        row = (await conn.execute(
            select(r.order_id, o.status, o.expires).select_from(
                t.replacements.outerjoin(t.orders, o.id == r.order_id)
            ).where(r.serial == serial)
        )).first()
        if row is None:
            try:
                await conn.execute(t.replacements.insert().values(serial=serial, order_id=order_id))
                return
            except IntegrityError:
                raise problems.already_replaced("this certificate is already being replaced") from None
        status, expires = row.status, row.expires
        dead = status is None or status == "invalid" or (status in ("pending", "ready") and expires <= now)
        if not dead:
            raise problems.already_replaced(
                "this certificate has already been replaced (or a replacement order is in progress)"
            )
        taken = await conn.execute(
            update(t.replacements).where(r.serial == serial, r.order_id == row.order_id).values(order_id=order_id)
        )
        if taken.rowcount != 1:
            raise problems.already_replaced("this certificate is already being replaced")

    async def release_replacement(self, order_id: str, nonce: PendingNonce | None = None) -> None:
        async with self._write("order", nonce) as conn:
            await conn.execute(delete(t.replacements).where(t.replacements.c.order_id == order_id))

    async def get_order(self, config_id: str, order_id: str) -> Order | None:
        async with self._read("order") as conn:
            row = (await conn.execute(_ORDER_BY_ID, {"order_id": order_id, "config_id": config_id})).first()
        return _order(row) if row is not None else None

    async def get_order_with_authzs(self, config_id: str, order_id: str) -> tuple[Order, list[Authorization]] | None:
        """The order and its authorizations: prepared point reads (every order fetch,
        finalize and download makes them). An order's authorization ids never change."""
        rows = await self._tables.read_rows(_PREPARED_ORDER_BY_ID, {"order_id": order_id, "config_id": config_id},
                                            "order")
        if not rows:
            return None
        order = _order(rows[0])
        authzs: list[Authorization] = []
        for authz_id in order.authz_ids:
            found = await self._tables.read_rows(_PREPARED_AUTHZ_BY_ID, {"authz_id": authz_id, "config_id": config_id},
                                                 "authorization")
            authzs.extend(_authz(r) for r in found)
        return order, authzs

    async def update_order(self, order_id: str, expect: tuple[str, ...], *, nonce: PendingNonce | None = None,
                           **fields: Any) -> bool:
        """Compare-and-set on status; False when the order was no longer in ``expect``."""
        c = t.orders.c
        fields.setdefault("updated_at", self.clock())
        async with self._write("order", nonce) as conn:
            result = await conn.execute(
                update(t.orders).where(c.id == order_id, c.status.in_(expect)).values(**fields)
            )
        return result.rowcount == 1

    async def order_issued(self, conn: AsyncConnection, order_id: str, serial: str,
                           expect: tuple[str, ...] = ("processing",)) -> bool:
        """``expect`` -> valid on the caller's connection (the certificate's own transaction);
        False if the order was no longer in ``expect`` (another finalize got there first)."""
        result = await conn.execute(_ORDER_ISSUED, {"order_id": order_id, "expect": list(expect),
                                                    "new_serial": serial, "new_updated_at": self.clock()})
        return result.rowcount == 1

    async def list_orders(self, account_id: str, now: dt.datetime, limit: int, offset: int) -> list[str]:
        """Ids of the account's orders that are not invalid, oldest first."""
        c = t.orders.c
        live = or_(c.status.in_(("processing", "valid")),
                   and_(c.status.in_(("pending", "ready")), c.expires > now))
        stmt = (select(c.id).where(c.account_id == account_id, live)
                .order_by(c.created_at, c.id).limit(limit).offset(offset))
        async with self._read("orders") as conn:
            return [r.id for r in (await conn.execute(stmt)).all()]

    async def reusable_authzs(
        self, config_id: str, account_id: str, identifiers: list[Identifier], valid_after: dt.datetime,
        include_pending: bool,
    ) -> list[Authorization]:
        """Authorizations of this account for these identifiers that live past ``valid_after``,
        latest expiry first (one prepared point read per name: every new order asks)."""
        statuses = ("valid", "pending") if include_pending else ("valid",)
        found: list[Authorization] = []
        for name in sorted({i.base for i in identifiers}):
            rows = await self._tables.read_rows(_PREPARED_LIVE_AUTHZS, {
                "account_id": account_id, "config_id": config_id, "name": name, "valid_after": valid_after,
            }, "authorizations")
            found.extend(a for a in map(_authz, rows) if a.status in statuses)
        found.sort(key=lambda a: a.expires, reverse=True)
        return found

    async def get_authz(self, config_id: str, authz_id: str) -> Authorization | None:
        rows = await self._tables.read_rows(_PREPARED_AUTHZ_BY_ID, {"authz_id": authz_id, "config_id": config_id},
                                            "authorization")
        return _authz(rows[0]) if rows else None

    async def create_authz(self, authz: Authorization) -> None:
        async with self._write("authorization") as conn:
            await conn.execute(t.authorizations.insert(), _authz_values(authz))

    async def start_attempt(self, authz: Authorization, challenge: Challenge, stale_before: dt.datetime,
                            nonce: PendingNonce | None = None) -> bool:
        """Claim the authorization for one validation attempt (compare-and-set).

        Succeeds when no attempt runs, or the running one started before
        ``stale_before`` (its replica died).
        """
        a = t.authorizations.c
        free: ColumnElement[bool] = a.attempt.is_(None)
        current = authz.challenge(authz.attempt) if authz.attempt else None
        if current is not None and current.started is not None and current.started < stale_before:
            free = or_(free, a.attempt == authz.attempt)
        async with self._write("authorization", nonce) as conn:
            result = await conn.execute(
                update(t.authorizations).where(a.id == authz.id, a.status == "pending", free)
                .values(attempt=challenge.type, challenges=[c.to_json() for c in authz.with_challenge(challenge)])
            )
        return result.rowcount == 1

    async def accept_without_attempt(self, authz: Authorization, challenge: Challenge,
                                     expires: dt.datetime, nonce: PendingNonce | None = None) -> bool:
        """pending -> valid in one statement (the test-only always-valid mode)."""
        params = {"authz_id": authz.id, "new_attempt": challenge.type, "new_expires": expires,
                  "new_challenges": [c.to_json() for c in authz.with_challenge(challenge)]}
        async with self._write("authorization", nonce) as conn:
            result = await conn.execute(_ACCEPT_WITHOUT_ATTEMPT, params)
        return result.rowcount == 1

    async def finish_attempt(self, authz: Authorization, status: str, challenge: Challenge,
                             expires: dt.datetime) -> bool:
        a = t.authorizations.c
        async with self._write("authorization") as conn:
            result = await conn.execute(
                update(t.authorizations).where(a.id == authz.id, a.status == "pending", a.attempt == challenge.type)
                .values(status=status, expires=expires,
                        challenges=[c.to_json() for c in authz.with_challenge(challenge)])
            )
        return result.rowcount == 1

    async def deactivate_authz(self, authz_id: str) -> bool:
        a = t.authorizations.c
        async with self._write("authorization") as conn:
            result = await conn.execute(
                update(t.authorizations).where(a.id == authz_id, a.status.in_(("pending", "valid")))
                .values(status="deactivated")
            )
        return result.rowcount == 1

    async def valid_identifiers(self, config_id: str, account_id: str, now: dt.datetime) -> set[Identifier]:
        """Identifiers this account holds valid, unexpired authorizations for (revocation, RFC 8555 7.6)."""
        a = t.authorizations.c
        stmt = select(a.identifier_type, a.identifier_value, a.wildcard).where(
            a.config_id == config_id, a.account_id == account_id, a.status == "valid", a.expires > now
        )
        async with self._read("authorizations") as conn:
            rows = (await conn.execute(stmt)).all()
        out = set()
        for r in rows:
            out.add(Identifier(r.identifier_type, ("*." if r.wildcard else "") + r.identifier_value))
        return out

    # --- EAB keys ------------------------------------------------------------------------
    async def insert_eab(self, key: EabKey) -> None:
        values = {
            "kid": key.kid, "config_id": key.config_id, "hmac_key_encrypted": key.hmac_key_encrypted,
            "identifiers": key.identifiers, "label": key.label, "created_by": key.created_by,
            "created_at": key.created_at, "account_id": key.account_id, "bound_at": key.bound_at,
            "revoked": key.revoked,
        }
        async with self._write("EAB key") as conn:
            await conn.execute(t.eab_keys.insert().values(**values))

    async def get_eab(self, config_id: str, kid: str) -> EabKey | None:
        k = t.eab_keys.c
        async with self._read("EAB key") as conn:
            row = (await conn.execute(select(t.eab_keys).where(k.kid == kid, k.config_id == config_id))).first()
        return _eab(row) if row is not None else None

    async def list_eab(self, config_id: str, limit: int, offset: int) -> list[EabKey]:
        k = t.eab_keys.c
        stmt = select(t.eab_keys).where(k.config_id == config_id).order_by(k.created_at, k.kid).limit(limit).offset(offset)
        async with self._read("EAB keys") as conn:
            return [_eab(r) for r in (await conn.execute(stmt)).all()]

    async def revoke_eab(self, config_id: str, kid: str) -> EabKey | None:
        """Mark revoked; also deactivates the account bound to it. None if unknown."""
        k = t.eab_keys.c
        async with self._write("EAB key") as conn:
            row = (await conn.execute(select(t.eab_keys).where(k.kid == kid, k.config_id == config_id))).first()
            if row is None:
                return None
            await conn.execute(update(t.eab_keys).where(k.kid == kid).values(revoked=True))
            if row.account_id is not None:
                await conn.execute(update(t.accounts).where(t.accounts.c.id == row.account_id)
                                   .values(status="deactivated"))
        return _eab(row)

    # --- housekeeping ----------------------------------------------------------------------
    async def sweep(self, now: dt.datetime) -> int:
        """Delete used nonces and rate counters that can no longer matter."""
        async with self._write("sweep") as conn:
            a = await conn.execute(delete(t.used_nonces).where(t.used_nonces.c.expires < now))
            b = await conn.execute(delete(t.rate_counters).where(t.rate_counters.c.window_end < now))
        return int(a.rowcount or 0) + int(b.rowcount or 0)

    async def counts(self) -> dict[str, int]:
        """Rows per ACME table (tests and metrics)."""
        tables = {"accounts": t.accounts, "orders": t.orders, "authorizations": t.authorizations,
                  "eab_keys": t.eab_keys, "replacements": t.replacements, "used_nonces": t.used_nonces}
        out = {}
        async with self._read("counts") as conn:
            for name, table in tables.items():
                out[name] = int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
        return out


"""How database failures reach callers: gateway errors whose details never carry SQL.

Unique-serial violations raise :class:`SerialCollision` (the Authority signs again
with a new serial), other unique or foreign-key violations raise
:class:`gateway.errors.Conflict` with a client message, an unreachable database is
``UNAVAILABLE``, and everything else from the driver becomes a :class:`StoreError`.

"Unavailable" covers every failure that says nothing about the request: the
connection was lost (``pg_terminate_backend``, a restart, a network cut: SQLAlchemy
marks those ``connection_invalidated``), the server is shutting down or out of
connections, or a transaction lost a serialization race. Nothing was committed by
the failed block, so the client gets a retryable answer (HTTP 503, ACME
``serverInternal`` with ``Retry-After``, SCEP HTTP 503), never a final refusal.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)

from ..errors import Conflict, ErrorKind, GatewayError

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreError(GatewayError):
    """The database failed in a way the caller cannot fix by changing the request."""

    kind = ErrorKind.INTERNAL


class SerialCollision(StoreError):
    """A certificate with this serial number already exists; pick a new serial and retry."""

    kind = ErrorKind.CONFLICT


# constraint name (PostgreSQL message) or "table.column" (SQLite message) -> client message
_UNIQUE_MESSAGES: tuple[tuple[str, str, str], ...] = (
    ("uq_certificates_fingerprint_sha256", "certificates.fingerprint_sha256",
     "a certificate with this fingerprint already exists"),
    ("uq_end_entities_name_protocol_config", "end_entities.name",
     "an end entity with this name already exists in this protocol configuration"),
    ("uq_api_keys_key_sha256", "api_keys.key_sha256", "an API key with this hash already exists"),
)


def _is_serial_violation(message: str) -> bool:
    return "uq_certificates_serial" in message or "certificates.serial" in message


def integrity_error(exc: IntegrityError, what: str, serial: str | None) -> GatewayError:
    """The gateway error for a constraint violation while writing ``what``."""
    orig = exc.orig
    message = str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == "23505" or "UNIQUE constraint failed" in message:
        if _is_serial_violation(message):
            return SerialCollision(f"serial number {serial} is already in use")
        for pg_name, sqlite_column, client_message in _UNIQUE_MESSAGES:
            if pg_name in message or sqlite_column in message:
                return Conflict(client_message)
        return Conflict(f"{what} already exists")
    if sqlstate == "23503" or "FOREIGN KEY constraint failed" in message:
        return Conflict(f"{what} refers to a CA that does not exist")
    log.warning("store constraint violation on %s: %s", what, type(orig).__name__)
    return StoreError(f"{what} violates a database constraint")


# SQLSTATE classes and codes that mean "try again later", not "your request is wrong":
# 08 connection exception, 53 insufficient resources, 57P01-57P03 shutdown / cannot
# connect now, 40001 serialization failure, 40P01 deadlock.
_RETRYABLE_CLASSES = ("08", "53")
_RETRYABLE_STATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not serve now (the block committed nothing
    and may be run again on a fresh connection)."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in _RETRYABLE_CLASSES or sqlstate in _RETRYABLE_STATES
    return False


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is the gateway error for a store that could not serve this attempt
    (its cause a transient driver error: a dropped connection, a restarting server), so a
    request that only reads may be answered by running it once more."""
    cause = exc.__cause__
    return (isinstance(exc, GatewayError) and exc.kind is ErrorKind.UNAVAILABLE
            and cause is not None and is_transient(cause))


async def once_more_if_connection_lost(call: Callable[[], Awaitable[T]], what: str) -> T:
    """``call()``, and if the store connection was lost under it, ``call()`` once more on a
    fresh one. Only for work that changes nothing (reads): a second loss propagates."""
    try:
        return await call()
    except GatewayError as exc:
        if not connection_lost(exc):
            raise
        log.info("store connection lost during %s; running it again", what)
    return await call()


def unavailable(exc: BaseException, what: str) -> StoreError:
    log.warning("store unavailable while handling %s: %s", what, type(exc).__name__)
    return StoreError("database unavailable", kind=ErrorKind.UNAVAILABLE)


def db_error(exc: BaseException, what: str) -> GatewayError:
    """The gateway error for any driver failure while handling ``what``."""
    if isinstance(exc, IntegrityError):
        return integrity_error(exc, what, None)
    if is_transient(exc):
        return unavailable(exc, what)
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        # raised while binding parameters, e.g. a naive datetime (our own message)
        if isinstance(exc.orig, (ValueError, TypeError)):
            return StoreError(f"invalid value for {what}: {exc.orig}")
    log.warning("store error while handling %s: %s", what, type(exc).__name__)
    return StoreError("database error")


@contextlib.contextmanager
def translated(what: str, serial: str | None = None) -> Iterator[None]:
    """Driver errors raised inside the block become gateway errors about ``what``
    (``serial``: the certificate being inserted, for :class:`SerialCollision`)."""
    try:
        yield
    except IntegrityError as exc:
        raise integrity_error(exc, what, serial) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise db_error(exc, what) from exc

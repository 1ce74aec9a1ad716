"""Column types and naming rules shared by the core's tables and each protocol's own.

Protocol packages declare their tables with these (``protocols/<name>/schema.py``)
without reaching into the core store.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = ["NAMING_CONVENTION", "AutoId", "JSONDoc", "UTCDateTime"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}
"""Stable constraint names, so errors can be classified and migrations can refer to them."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every engine.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone support, so the value
    is stored as naive UTC text and handed back with ``tzinfo=UTC``. Naive datetimes
    are refused on the way in: a naive value is a bug, not an implicit UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        utc = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stamp: dt.datetime = value  # DateTime's own result processor has already made a datetime
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc)


def JSONDoc() -> JSON:  # noqa: N802 - reads like a type in column definitions
    """JSON on SQLite, JSONB on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")


def AutoId() -> BigInteger:  # noqa: N802
    """A 64-bit autoincrement key; SQLite only autoincrements ``INTEGER PRIMARY KEY``."""
    return BigInteger().with_variant(Integer(), "sqlite")



"""What every table's queries share: rows to records and back, and the statement
helpers that translate driver errors (:func:`gateway.store.errors.translated`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, TypeVar

from sqlalchemy import Executable, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ...errors import BadRequest, NotFound
from ..errors import StoreError, translated
from ..records import serial_hex

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Rec = TypeVar("Rec", bound="DataclassInstance")


def normalize_serial(value: str) -> str:
    """Canonical serial form: lowercase hex, no leading zeros; accepts ``0x`` and colons."""
    try:
        number = int(value.replace(":", "").strip(), 16)
    except (ValueError, AttributeError):
        raise BadRequest("serial number is not a hexadecimal number") from None
    if number < 0:
        raise BadRequest("serial number must not be negative")
    return serial_hex(number)


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").strip().lower()


def values_of(rec: DataclassInstance, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record's fields as column values."""
    return {f.name: getattr(rec, f.name) for f in dataclasses.fields(rec) if f.name not in drop}


def record(cls: type[Rec], row: Any) -> Rec:
    """A row as a record (columns the record does not know are left out)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def checked_fields(cls: type[DataclassInstance], fields: Mapping[str, Any], fixed: frozenset[str]) -> dict[str, Any]:
    """``fields`` to update, refused (StoreError) if one is not a changeable field of ``cls``."""
    allowed = {f.name for f in dataclasses.fields(cls)} - fixed
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise StoreError(f"cannot update field(s) {', '.join(unknown)} of {cls.__name__}")
    return dict(fields)


def page(limit: int, offset: int) -> tuple[int, int]:
    if limit < 0 or offset < 0:
        raise BadRequest("limit and offset must not be negative")
    return limit, offset


class TableQueries:
    """Queries on one table, run on the connection of a ``read()`` or ``transaction()``
    block. A caller may catch an insert's constraint failure (:class:`SerialCollision`,
    Conflict), change the row and retry without losing the rest of the transaction:
    on PostgreSQL, where a failed statement aborts the transaction, the insert runs
    under a savepoint; SQLite backs out only the failed statement (its default ABORT
    conflict resolution), so there the savepoint's two statements are skipped."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _insert(self, stmt: Executable, values: dict[str, Any], what: str,
                      serial: str | None = None, *, savepoint: bool = True) -> Any:
        """``stmt``: the table's prebuilt INSERT, values bound, not built into it (cheaper).
        ``savepoint=False`` for rows nobody retries (audit events): skips two statements."""
        with translated(what, serial):
            if not savepoint or self._conn.dialect.name == "sqlite":
                return await self._conn.execute(stmt, values)
            async with self._conn.begin_nested():
                return await self._conn.execute(stmt, values)

    async def _update(self, table: Table, where: ColumnElement[bool], values: dict[str, Any], what: str) -> int:
        with translated(what):
            result = await self._conn.execute(table.update().where(where).values(**values))
        return result.rowcount

    async def _exists(self, table: Table, where: ColumnElement[bool], what: str) -> bool:
        with translated(what):
            return (await self._conn.execute(select(1).select_from(table).where(where))).first() is not None

    async def _one(self, cls: type[Rec], stmt: Executable, what: str,
                   params: dict[str, Any] | None = None) -> Rec | None:
        with translated(what):
            row = (await self._conn.execute(stmt, params)).first()
        return None if row is None else record(cls, row)

    async def _all(self, cls: type[Rec], stmt: Executable, what: str) -> list[Rec]:
        with translated(what):
            rows = (await self._conn.execute(stmt)).all()
        return [record(cls, row) for row in rows]

    async def _update_or_missing(self, table: Table, key: str, fields: dict[str, Any], what: str) -> None:
        """Update the row with id ``key``; NotFound if there is none (also with no fields)."""
        where = table.c.id == key
        if fields:
            if await self._update(table, where, fields, what) == 1:
                return
        elif await self._exists(table, where, what):
            return
        raise NotFound(f"{what} not found")

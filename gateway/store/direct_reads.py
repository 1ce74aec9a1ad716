"""Point reads on the bare SQLite driver: the few SELECTs every protocol request runs.

Every ACME request reads the configuration generation, its account and the
account's end entity. Through SQLAlchemy each of those costs a pooled connection,
a BEGIN, the execution context and a result object, about 50 µs on this machine
for a statement SQLite answers in 2 µs (bench, 2026-12-04). :class:`PreparedRead`
compiles such a statement once from the same Core table definitions (so there is
still one schema) and keeps the column types' bind and result processors;
:class:`DirectReads` runs it on one plain ``sqlite3`` connection in autocommit mode,
where the single SELECT is its own consistent read.

Only single-statement reads belong here: a block that needs several statements to
agree still takes :meth:`gateway.store.Store.read`. On PostgreSQL the store runs a
prepared read through SQLAlchemy as before (:meth:`PreparedRead.statement`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import Select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError

Processor = Callable[[Any], Any] | None
_DIALECT = sqlite.dialect()
_CALLER = object()
"""A parameter the caller binds (``bindparam("name")`` without a value)."""


class DirectRow:
    """One result row: ``row._mapping[name]`` and ``row.name``, like SQLAlchemy's Row."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


class PreparedRead:
    """A SELECT compiled once for SQLite, with its parameters' and columns' processors."""

    __slots__ = ("statement", "sql", "_params", "_columns")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = str(compiled)
        order = compiled.positiontup or []
        # (name, value fixed in the statement or _CALLER, processor): literals such as a
        # LIMIT or ``status == 'valid'`` are bound parameters with their value inside
        self._params: list[tuple[str, Any, Processor]] = []
        for name in order:
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"PreparedRead cannot take an IN list ({bind.key}); compare with == / OR")
            fixed = _CALLER if bind.callable is None and bind.value is None else bind.effective_value
            self._params.append((bind.key, fixed, bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)))
        self._columns: list[tuple[str, Processor]] = [
            (str(column.key), column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None))
            for column in statement.selected_columns
        ]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for key, fixed, process in self._params:
            value = params[key] if fixed is _CALLER else fixed
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out)

    def row(self, values: tuple[Any, ...]) -> DirectRow:
        return DirectRow({key: (process(v) if process is not None and v is not None else v)
                          for (key, process), v in zip(self._columns, values)})


class DirectReads:
    """One autocommit ``sqlite3`` connection for :class:`PreparedRead` statements,
    used on the event loop's thread only (a WAL reader never waits for writers)."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._connection: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            self._connection = conn
        return self._connection

    def rows(self, prepared: PreparedRead, params: Mapping[str, Any]) -> Iterator[DirectRow]:
        """The rows, processed; driver errors as SQLAlchemy's (the store maps those)."""
        try:
            fetched = self._conn().execute(prepared.sql, prepared.bind(params)).fetchall()
        except sqlite3.Error as exc:
            self.close()  # a fresh connection next time
            raise OperationalError(prepared.sql, None, exc) from exc
        return (prepared.row(values) for values in fetched)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

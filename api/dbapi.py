"""Fixed statements compiled once per dialect and run straight on the DBAPI cursor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class CompiledStatement:
    """A fixed statement compiled once for one dialect and run straight on the DBAPI cursor.

    SQLAlchemy's execute path (cache key, parameter and result processing, result metadata) costs
    more CPU than the driver's own work for a page; these statements never change, so that work is
    done once here, with SQLAlchemy's public compiler and type APIs. Driver errors are wrapped as
    SQLAlchemy's (``OperationalError`` → 503), and a dropped connection is invalidated.
    """

    sql: str
    positional: tuple[str, ...] | None
    """Parameter order for positional paramstyles (SQLite's ``?``); None for named ones."""
    defaults: Mapping[str, Any]
    binds: Mapping[str, Callable[[Any], Any]]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    """Columns the driver does not return as the Python type (SQLite's datetimes and booleans)."""

    @classmethod
    def of(cls, statement: sa.Select[Any] | sa.CompoundSelect[Any], dialect: sa.Dialect) -> CompiledStatement:
        compiled = statement.compile(dialect=dialect)
        if compiled.has_out_parameters or "POSTCOMPILE" in compiled.string:
            raise ValueError("expanding or OUT parameters are not supported here")
        binds = {}
        defaults = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds[name] = process
            if not bind.required:
                defaults[name] = bind.effective_value
        results = []
        for i, column in enumerate(statement.selected_columns):
            if isinstance(column.type, sa.DateTime | sa.Boolean):
                process = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if process is not None:
                    results.append((i, process))
        positional = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        return cls(compiled.string, positional, defaults, binds, tuple(results))

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        values = {**self.defaults, **params}
        for name, process in self.binds.items():
            values[name] = process(values[name])
        args: Any = values if self.positional is None else [values[name] for name in self.positional]
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, args)
            rows: Sequence[Any] = cursor.fetchall()
        except dbapi.Error as exc:
            if conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor):
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(self.sql, args, exc, dbapi.Error) from exc
        finally:
            cursor.close()
        if self.results:
            converted = [list(row) for row in rows]
            for row in converted:
                for i, process in self.results:
                    row[i] = process(row[i])
            return converted
        return rows


@lru_cache(maxsize=256)
def compiled_for(
    statement: sa.Select[Any] | sa.CompoundSelect[Any], dialect: sa.Dialect
) -> CompiledStatement:
    return CompiledStatement.of(statement, dialect)

"""Fixed statements compiled once per dialect and run straight on the DBAPI cursor, and the two
ways the API learns that data changed: the changes read on a SQLite connection of its own, a
PostgreSQL ``LISTEN`` connection."""

from __future__ import annotations

import contextlib
import threading
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

    def args(self, params: Mapping[str, Any]) -> Any:
        """The driver's parameters for ``params`` (defaults filled in, values converted)."""
        values = {**self.defaults, **params}
        for name, process in self.binds.items():
            values[name] = process(values[name])
        return values if self.positional is None else [values[name] for name in self.positional]

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        args = self.args(params)
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


class SqliteVersion:
    """A small read (the page changes after the last one seen) on a SQLite connection of its own,
    detached from the pool: a primary-key range scan on the event loop costs microseconds, a pool
    checkout costs more. Each read is its own snapshot (no transaction is held open). A failed read
    says None (the caller then trusts nothing it kept) and the connection is opened again on the
    next read."""

    def __init__(self, engine: sa.Engine, statement: sa.Select[Any]) -> None:
        self._engine = engine
        self._compiled = CompiledStatement.of(statement, engine.dialect)
        self._conn: Any = None
        self._cursor: Any = None
        self._lock = threading.Lock()

    def read(self, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]] | None:
        """Every row the statement gives for ``params`` (types as ``CompiledStatement.rows``)."""
        dbapi = self._engine.dialect.loaded_dbapi
        args = self._compiled.args(params or {})
        with self._lock:
            try:
                if self._conn is None:
                    conn = self._engine.raw_connection()
                    conn.detach()
                    self._conn, self._cursor = conn, conn.cursor()
                self._cursor.execute(self._compiled.sql, args)
                rows = self._cursor.fetchall()  # done with the statement: no read stays open
            except dbapi.OperationalError:  # the database is unavailable: trust nothing kept
                self.close_locked()
                return None
        if self._compiled.results and rows:
            converted = [list(row) for row in rows]
            for row in converted:
                for i, process in self._compiled.results:
                    row[i] = process(row[i])
            return [tuple(row) for row in converted]
        return [tuple(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class PostgresListener:
    """One connection per process ``LISTEN``-ing on ``channel``, in a thread: ``generation`` changes
    with every notification and every (re)connect, and is None while the listener is not
    connected (at start, while the database is down or restarting), so the caller trusts nothing
    it kept then. A notification is sent by the writer's transaction and delivered at its commit;
    ``on_notify`` (called in the listener's thread) gets its payload, and None when notifications
    may have been missed (every connect and disconnect). Started on the first ``generation()``;
    reconnects every ``retry_s`` after a failure."""

    def __init__(
        self,
        engine: sa.Engine,
        channel: str,
        *,
        retry_s: float = 0.5,
        check_s: float = 1.0,
        on_notify: Callable[[str | None], None] | None = None,
    ) -> None:
        if not channel.isidentifier():
            raise ValueError(f"not a channel name: {channel!r}")
        self._engine = engine
        self._channel = channel
        self._retry_s = retry_s
        self._check_s = check_s
        self._on_notify = on_notify or (lambda payload: None)
        self._counter = 0
        self._connected = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.connects = 0
        """How many times the listener (re)connected (tests watch it)."""

    def generation(self) -> int | None:
        if self._thread is None:
            self.start()
        return self._counter if self._connected else None

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._stop = threading.Event()  # this thread's own: a stopped one may still be ending
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name=f"listen-{self._channel}", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """Stop listening (the thread ends, and closes its connection, within ``check_s``)."""
        self._stop.set()
        self._thread = None
        self._connected = False

    def _bump(self, payload: str | None = None) -> None:
        self._on_notify(payload)
        self._counter += 1

    def _run(self, stop: threading.Event) -> None:
        import psycopg

        args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("options",)}
        kwargs.setdefault("connect_timeout", 5)
        while not stop.is_set():
            try:
                with psycopg.connect(*args, **kwargs, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    self._bump()  # whatever was kept before this connection may have missed one
                    if not stop.is_set():
                        self._connected = True
                    self.connects += 1
                    while not stop.is_set():
                        for notify in conn.notifies(timeout=self._check_s):  # a dropped connection raises
                            self._bump(notify.payload)
            except psycopg.Error:
                pass
            finally:
                if not stop.is_set():
                    self._connected = False
                self._bump()
            stop.wait(self._retry_s)

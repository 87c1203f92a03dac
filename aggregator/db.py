"""Engine and sessions. Built from settings in ``main.py``; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

if TYPE_CHECKING:  # sqlmodel (and the ORM under it) loads with the first session, not with the engine
    from sqlmodel import Session

    from aggregator.settings import Settings

DEDUPE_LOCK_KEY = 0x62616265_6C646470
"""pg_advisory_xact_lock key of the dedupe stage ("babeldedup"); writers of every story's feed
entries take it too."""

ANSWER_GRACE_S = 5.0
"""How much longer than its statement timeout the API waits for an answer before dropping it."""


def make_engine(settings: Settings, *, statement_timeout_s: float | None = None, **kw: Any) -> sa.Engine:
    """An engine for the configured database; SQLite gets WAL, foreign keys and a busy timeout.

    PostgreSQL connections give up after ``db_connect_timeout_s`` when the server does not answer,
    and, with ``statement_timeout_s`` (the API's engine), cancel a statement running longer: a
    request fails (503) instead of hanging while the database is down or stuck. A server that
    gives no answer at all (frozen) costs ``db_answer_timeout_s`` (the API: its statement timeout
    and ``ANSWER_GRACE_S``), see ``aggregator.dbwait``.
    """
    if settings.is_sqlite:
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            settings.database_url, connect_args={"check_same_thread": False, "timeout": 30}, **kw
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    # No ping before every checkout (a round trip per request on the read path): a statement that
    # finds its connection dropped invalidates it (``api.dbapi``), and the next checkout reconnects.
    kw.setdefault("pool_pre_ping", False)
    # Every answer is bounded on the client too (a frozen server never runs its statement timeout).
    from aggregator.dbwait import bound_answers, keepalive_args  # psycopg: PostgreSQL engines only

    answer_s = settings.db_answer_timeout_s
    if statement_timeout_s:
        answer_s = min(answer_s, statement_timeout_s + ANSWER_GRACE_S)
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout_s,
        **keepalive_args(answer_s),
    }
    if statement_timeout_s:
        connect_args["options"] = f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}"
    kw["connect_args"] = {**connect_args, **kw.get("connect_args", {})}
    engine = sa.create_engine(settings.database_url, **kw)
    if engine.dialect.driver == "psycopg":
        bound_answers(engine, answer_s)
    return engine


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

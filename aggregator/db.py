"""Engine and sessions. Built from settings in ``main.py``; nothing is created at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Session

from aggregator.settings import Settings

DEDUPE_LOCK_KEY = 0x62616265_6C646470
"""pg_advisory_xact_lock key of the dedupe stage ("babeldedup"); writers of every story's feed
entries take it too."""


def make_engine(settings: Settings, **kw: Any) -> sa.Engine:
    """An engine for the configured database; SQLite gets WAL, foreign keys and a busy timeout."""
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
    return sa.create_engine(settings.database_url, **kw)


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

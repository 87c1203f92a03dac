"""Values every process shares, kept in the ``appstate`` table (so replicas and restarts agree)."""

from __future__ import annotations

import secrets
from typing import cast

import sqlalchemy as sa

from aggregator.models import AppState

_STATE = cast(sa.Table, AppState.__table__)  # type: ignore[attr-defined]
CURSOR_SECRET_KEY = "cursor_secret"


def get_state(conn: sa.Connection, key: str) -> str | None:
    value = conn.execute(sa.select(_STATE.c.value).where(_STATE.c.key == key)).scalar()
    return None if value is None else str(value)


def put_state(conn: sa.Connection, key: str, value: str) -> None:
    if conn.execute(sa.update(_STATE).where(_STATE.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(sa.insert(_STATE).values(key=key, value=value))


def shared_secret(engine: sa.Engine, key: str = CURSOR_SECRET_KEY) -> str:
    """The random secret stored under ``key``, made (32 random bytes, hex) by the first process that
    asks; a process racing it reads the winner's value instead."""
    with engine.connect() as conn:
        value = get_state(conn, key)
    if value is not None:
        return value
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(_STATE).values(key=key, value=secrets.token_hex(32)))
    except sa.exc.IntegrityError:
        pass
    with engine.connect() as conn:
        value = get_state(conn, key)
    assert value is not None
    return value

"""A client-side bound on every PostgreSQL answer: a frozen server costs a timeout, not a hang.

A server that is stopped (SIGSTOP), swapped out or stuck still has a kernel that accepts
connections and acknowledges bytes, so neither TCP keepalives nor ``tcp_user_timeout`` notice, and
``statement_timeout`` runs on the server, which does not run. ``connect_timeout`` bounds opening a
connection; this bounds each answer on an open one: a wait longer than ``answer_timeout_s``
closes the connection and raises ``psycopg.OperationalError``, which SQLAlchemy reads as a
disconnect (the pool drops the connection) and the API answers with a 503.

Keepalives and ``tcp_user_timeout`` are set too (:func:`keepalive_args`): they catch what this
does not need to wait for, a host or network that is gone.
"""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors
from sqlalchemy import event


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait for the server ends after ``answer_timeout_s``."""

    answer_timeout_s: float | None = None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        bound = self.answer_timeout_s if timeout is None else timeout
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except errors._WaitTimeout:  # psycopg's own signal that the wait timed out
            # The protocol stopped mid-exchange: the connection cannot be used again.
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database server gave no answer within {bound:g} s (connection closed)"
            ) from None


def keepalive_args(answer_timeout_s: float) -> dict[str, Any]:
    """libpq options: probe an idle connection after 30 s, give up on unacknowledged data after
    ``answer_timeout_s`` (a host or network that is gone)."""
    return {
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": max(1000, round(answer_timeout_s * 1000)),
    }


def bound_answers(engine: sa.Engine, answer_timeout_s: float) -> None:
    """Open ``engine``'s PostgreSQL connections as :class:`BoundedConnection` with this bound."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        conn = BoundedConnection.connect(*cargs, **cparams)
        conn.answer_timeout_s = answer_timeout_s
        return conn

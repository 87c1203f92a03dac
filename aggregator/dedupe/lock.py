"""The dedupe lock: one run at a time across processes, so two never found two stories for one article.

On PostgreSQL a transaction-scoped advisory lock taken as the run's first statement: a run that
waited for another then reads that one's stories (read committed). The wait is bounded; past it
the run gives up with :class:`DedupeBusy` and the items it leaves wait for the next run (a worker
tick dedupes whenever an item has no story). On SQLite the database's one writer serializes runs.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session

from aggregator.db import DEDUPE_LOCK_KEY
from core.errors import StorageError

LOCK_KEY = DEDUPE_LOCK_KEY
"""pg_advisory_xact_lock key of the dedupe stage, which every writer of stories shares."""
LOCK_WAIT_S = 120.0
"""How long a run waits for another process's run to finish before giving up."""


class DedupeBusy(StorageError):
    """Another process's dedupe run held the lock for longer than this run would wait."""


def serialize_run(session: Session, wait_s: float | None = None) -> None:
    """Hold the dedupe lock until ``session``'s transaction ends (PostgreSQL; nothing on SQLite),
    waiting at most ``wait_s`` (default :data:`LOCK_WAIT_S`)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    # The timeout bounds this wait only: it is reset once the lock is held.
    session.execute(sa.text(f"SET LOCAL lock_timeout = {max(1, round(wait_s * 1000))}"))
    try:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    except sa.exc.OperationalError as e:
        if getattr(e.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise DedupeBusy(f"dedupe: another run held the lock for over {wait_s:g} s") from None
        raise
    session.execute(sa.text("SET LOCAL lock_timeout = DEFAULT"))

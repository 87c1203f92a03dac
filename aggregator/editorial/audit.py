"""The audit log: one row per admin action, written in the action's own transaction.

Writing one also tells the API that pages built before the action commits are stale
(``aggregator.entries.touch_pages``): an action may change what a page shows without rewriting
entries (a new disclaimer)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from aggregator.editorial import Actor
from aggregator.entries import touch_pages
from aggregator.models import AuditLog


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    entry = AuditLog(
        actor=actor.name, key_id=actor.key_id, action=action, target=target[:2000], before=before, after=after
    )
    session.add(entry)
    touch_pages(session)
    return entry


def entries(
    session: Session, *, before_id: int | None = None, limit: int = 50, action: str | None = None
) -> tuple[list[AuditLog], int | None]:
    """Newest first; the second value is the ``before_id`` of the next page (None at the end)."""
    q = select(AuditLog).order_by(col(AuditLog.id).desc()).limit(limit + 1)
    if before_id is not None:
        q = q.where(col(AuditLog.id) < before_id)
    if action:
        q = q.where(col(AuditLog.action) == action)
    rows = list(session.exec(q).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)

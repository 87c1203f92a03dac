"""Disclaimers: per-(policy, locale) texts with versions. The bundled ``sources/disclaimers.toml``
text is version 0 (``seed-1`` in the API); each published text is the next version, and the newest
one is in force at once (the feed reads the newest row)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from aggregator import LOCALES
from aggregator.editorial import Actor
from aggregator.editorial.audit import record
from aggregator.models import Disclaimer, Outlet
from core.errors import EditorialError

MAX_TEXT = 5000


def _seeds() -> dict[tuple[str, str], str]:
    from sources.disclaimers import load_disclaimers

    return load_disclaimers()


def overview(session: Session) -> dict[str, Any]:
    """Every policy × locale with the text in force and its version; which outlets use which policy."""
    seeds = _seeds()
    newest: dict[tuple[str, str], Disclaimer] = {}
    for row in session.exec(select(Disclaimer).order_by(col(Disclaimer.version))).all():
        newest[(row.policy, row.locale)] = row
    policies = sorted({p for p, _ in seeds} | {p for p, _ in newest})
    texts = {
        policy: {
            loc: (
                {"text": newest[(policy, loc)].text, "version": newest[(policy, loc)].version}
                if (policy, loc) in newest
                else {"text": seeds.get((policy, loc), ""), "version": 0}
            )
            for loc in LOCALES
        }
        for policy in policies
    }
    outlets: dict[str, list[str]] = defaultdict(list)
    for o in session.exec(select(Outlet).order_by(col(Outlet.id))).all():
        outlets[o.disclaimer_policy].append(o.id)
    return {"policies": texts, "outlets": dict(outlets)}


def history(session: Session, policy: str, locale: str) -> list[Disclaimer]:
    return list(
        session.exec(
            select(Disclaimer)
            .where(Disclaimer.policy == policy, Disclaimer.locale == locale)
            .order_by(col(Disclaimer.version).desc())
        ).all()
    )


def publish(session: Session, actor: Actor, policy: str, locale: str, text: str) -> Disclaimer:
    """A new version of (policy, locale), in force at once."""
    known = {p for p, _ in _seeds()}
    if policy not in known:
        raise EditorialError(f"policy: unknown policy {policy!r} (one of {', '.join(sorted(known))})")
    if locale not in LOCALES:
        raise EditorialError(f"locale: unknown locale {locale!r}")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise EditorialError(f"text: at most {MAX_TEXT} characters")
    if policy == "none" and text:
        raise EditorialError("text: the `none` policy has no text")
    current = session.exec(
        select(sa.func.max(Disclaimer.version)).where(
            Disclaimer.policy == policy, Disclaimer.locale == locale
        )
    ).one()
    before = history(session, policy, locale)
    row = Disclaimer(policy=policy, locale=locale, version=int(current or 0) + 1, text=text)
    session.add(row)
    session.flush()
    record(
        session,
        actor,
        "disclaimer.publish",
        f"disclaimer:{policy}/{locale}",
        {"version": before[0].version, "text": before[0].text}
        if before
        else {"version": 0, "text": _seeds().get((policy, locale), "")},
        {"version": row.version, "text": row.text},
    )
    return row

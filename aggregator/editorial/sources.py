"""Admins' source actions: add, update, enable/disable, poll now, OPML import/export, subscribe the
outlet catalogue, and the health table (last fetch, status, errors, next check, items per day)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from aggregator import LOCALES
from aggregator.editorial import Actor
from aggregator.editorial.audit import record
from aggregator.models import Item, Source
from core.errors import CatalogueError, ConflictError, EditorialError, NotFoundError
from sources.opml import SourceSpec, export_opml, parse_opml

SPARK_DAYS = 14
"""Days of the items-per-day series in the health table."""


def describe(src: Source) -> dict[str, Any]:
    return {
        "id": src.id,
        "url": src.url,
        "outlet": src.outlet_id,
        "locale": src.locale,
        "title": src.title,
        "enabled": src.enabled,
        "last_checked_at": src.last_checked_at.isoformat() if src.last_checked_at else None,
        "last_status": src.last_status,
        "error_count": src.error_count,
        "last_error": src.last_error,
        "skipped_entries": src.skipped_entries,
        "next_check_at": src.next_check_at.isoformat(),
    }


def health(session: Session, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every source with its polling state and items per day (mean of the last 7 days, and a
    ``SPARK_DAYS`` series, oldest first)."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=SPARK_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day: dict[int, list[int]] = defaultdict(lambda: [0] * SPARK_DAYS)
    for source_id, published in session.exec(
        select(Item.source_id, Item.published_at).where(col(Item.published_at) >= start)
    ).all():
        day = (published - start).days
        if 0 <= day < SPARK_DAYS:
            per_day[source_id][day] += 1
    out = []
    for src in session.exec(
        select(Source).order_by(col(Source.outlet_id), col(Source.locale), col(Source.id))
    ).all():
        series = per_day[src.id or 0]
        out.append({**describe(src), "items_per_day": round(sum(series[-7:]) / 7, 2), "daily": list(series)})
    return out


def _source(session: Session, source_id: int) -> Source:
    src = session.get(Source, source_id)
    if src is None:
        raise NotFoundError(f"no source {source_id}")
    return src


def _add(session: Session, specs: list[SourceSpec]) -> list[Source]:
    from aggregator.registry import check_spec, ensure_outlet

    for spec in specs:
        check_spec(spec)
    known = set(session.exec(select(Source.url).where(col(Source.url).in_({s.url for s in specs}))).all())
    added = []
    for spec in specs:
        if spec.url in known:
            continue
        known.add(spec.url)
        ensure_outlet(session, spec.outlet)
        src = Source(url=spec.url, outlet_id=spec.outlet, locale=spec.locale, title=spec.title)
        session.add(src)
        added.append(src)
    session.flush()
    return added


def add(session: Session, actor: Actor, spec: SourceSpec) -> Source:
    added = _add(session, [spec])
    if not added:
        raise ConflictError(f"{spec.url}: already a source")
    record(session, actor, "source.add", f"source:{added[0].id}", None, describe(added[0]))
    return added[0]


def update(session: Session, actor: Actor, source_id: int, changes: dict[str, Any]) -> Source:
    """Change url, outlet, locale, title or enabled; a changed URL forgets its validators."""
    from aggregator.registry import check_spec, ensure_outlet

    src = _source(session, source_id)
    before = describe(src)
    url = changes.get("url") or src.url
    outlet = changes.get("outlet") or src.outlet_id
    locale = changes.get("locale") or src.locale
    check_spec(SourceSpec(url=url, outlet=outlet, locale=locale, title=None))
    if url != src.url:
        if session.exec(select(Source.id).where(Source.url == url)).first() is not None:
            raise ConflictError(f"{url}: already a source")
        src.url, src.etag, src.last_modified = url, None, None
    if outlet != src.outlet_id:
        ensure_outlet(session, outlet)
        src.outlet_id = outlet
    src.locale = locale
    if "title" in changes and changes["title"] is not None:
        src.title = changes["title"].strip() or None
    if changes.get("enabled") is not None:
        src.enabled = bool(changes["enabled"])
    session.add(src)
    session.flush()
    record(session, actor, "source.update", f"source:{source_id}", before, describe(src))
    return src


def set_enabled(session: Session, actor: Actor, source_id: int, enabled: bool) -> Source:
    src = _source(session, source_id)
    before = describe(src)
    src.enabled = enabled
    if enabled:
        src.next_check_at = datetime.now(UTC)
    session.add(src)
    session.flush()
    record(
        session,
        actor,
        "source.enable" if enabled else "source.disable",
        f"source:{source_id}",
        before,
        describe(src),
    )
    return src


def poll_now(session: Session, actor: Actor, source_id: int) -> Source:
    """Due now: the next scheduler tick of any worker polls it (a held lease is left to expire)."""
    src = _source(session, source_id)
    if not src.enabled:
        raise ConflictError(f"source {source_id} is disabled; enable it first")
    before = describe(src)
    src.next_check_at = datetime.now(UTC)
    session.add(src)
    session.flush()
    record(session, actor, "source.poll_now", f"source:{source_id}", before, describe(src))
    return src


def import_opml(session: Session, actor: Actor, data: bytes) -> tuple[int, int]:
    """All or nothing; (added, already present)."""
    specs = parse_opml(data)
    added = _add(session, specs)
    record(
        session,
        actor,
        "source.import",
        "opml",
        None,
        {"added": [s.url for s in added], "outlines": len(specs)},
    )
    return len(added), len(specs) - len(added)


def opml(session: Session) -> bytes:
    rows = session.exec(
        select(Source).order_by(col(Source.outlet_id), col(Source.locale), col(Source.id))
    ).all()
    return export_opml(
        SourceSpec(url=s.url, outlet=s.outlet_id, locale=s.locale, title=s.title) for s in rows
    )


def catalogue_specs(outlet: str | None = None, locale: str | None = None) -> list[SourceSpec]:
    """The catalogue's feeds (``sources/outlets/*.toml``), of one outlet and/or locale."""
    from sources.catalogue import load_catalogue

    catalogue = load_catalogue()
    if outlet is not None and outlet not in catalogue:
        raise CatalogueError(f"unknown catalogue outlet {outlet!r} (one of {', '.join(sorted(catalogue))})")
    if locale is not None and locale not in LOCALES:
        raise CatalogueError(f"unknown locale {locale!r} (one of {', '.join(LOCALES)})")
    specs = [
        SourceSpec(url=url, outlet=spec.id, locale=loc, title=f"{spec.name} ({loc})")
        for spec in sorted(catalogue.values(), key=lambda s: s.id)
        if outlet is None or spec.id == outlet
        for loc, url in spec.feeds.items()
        if locale is None or loc == locale
    ]
    if not specs:
        raise EditorialError(
            f"the catalogue has no feed for outlet {outlet or 'any'} in locale {locale or 'any'}"
        )
    return specs


def subscribe_catalogue(
    session: Session, actor: Actor, outlet: str | None = None, locale: str | None = None
) -> tuple[int, int]:
    """Add every catalogue feed (of ``outlet``, in ``locale``) not yet a source; (added, present)."""
    specs = catalogue_specs(outlet, locale)
    added = _add(session, specs)
    record(
        session,
        actor,
        "source.catalogue",
        f"catalogue:{outlet or '*'}/{locale or '*'}",
        None,
        {"added": [s.url for s in added]},
    )
    return len(added), len(specs) - len(added)


def count(session: Session) -> int:
    return int(session.exec(select(sa.func.count()).select_from(Source)).one())

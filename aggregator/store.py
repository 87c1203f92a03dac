"""Store: one transaction per source update — items upserted, the source row's polling state set.

Also holds the polling policy (``plan_next_check``): a pure function of what the fetch said, so
the back-off and adaptive interval are unit-tested without a database.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.decide import Decision, StoredItem
from aggregator.fetch import FetchResult
from aggregator.models import FeedChange, Item, Source
from aggregator.normalize import NormalizedEntry
from aggregator.settings import Settings


@dataclass(frozen=True)
class NextCheck:
    at: datetime
    interval_s: int
    error_count: int
    enabled: bool


def publishing_interval_s(published: Iterable[datetime]) -> float | None:
    """Median gap between the feed's most recent entries, or None when it cannot be told."""
    times = sorted(set(published), reverse=True)[:20]
    if len(times) < 3:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    return statistics.median(gaps)


def plan_next_check(
    *,
    settings: Settings,
    now: datetime,
    source_id: int,
    error_count: int,
    fetch: FetchResult,
    published: Sequence[datetime] = (),
    failed: bool,
) -> NextCheck:
    """When to look at a source again.

    Success: half the feed's median publishing gap, bounded by ``min_interval_s`` and
    ``max_interval_s``, never sooner than the server's cache hint. Failure: exponential back-off
    with ±20 % jitter from ``min_interval_s``, capped at ``max_backoff_s`` (a feed failing for days
    is checked about once a day, never dropped); Retry-After wins when longer. 410 Gone disables
    the source.
    """
    lo, hi = settings.min_interval_s, settings.max_interval_s
    if fetch.gone:
        return NextCheck(
            now + timedelta(seconds=settings.max_backoff_s),
            settings.max_backoff_s,
            error_count + 1,
            enabled=False,
        )
    if failed:
        errors = error_count + 1
        rng = random.Random(source_id * 1_000_003 + errors)
        base = min(float(settings.max_backoff_s), lo * 2.0 ** min(errors - 1, 30))
        delay = min(float(settings.max_backoff_s), base * rng.uniform(0.8, 1.2))
        if fetch.retry_after_s:
            delay = max(delay, min(fetch.retry_after_s, float(settings.max_backoff_s)))
        return NextCheck(now + timedelta(seconds=delay), int(delay), errors, enabled=True)
    gap = publishing_interval_s(published)
    interval = float(hi) if gap is None else gap / 2
    if fetch.cache_hint_s:
        interval = max(interval, fetch.cache_hint_s)
    if fetch.retry_after_s:
        interval = max(interval, fetch.retry_after_s)
    interval = max(float(lo), min(float(hi), interval))
    return NextCheck(now + timedelta(seconds=interval), int(interval), 0, enabled=True)


def stored_items(session: Session, source_id: int, identities: Iterable[str]) -> dict[str, StoredItem]:
    """What is already stored for these identities of one source."""
    wanted = list(set(identities))
    found: dict[str, StoredItem] = {}
    for chunk in range(0, len(wanted), 500):
        rows = session.exec(
            select(Item.id, Item.identity, Item.content_hash, Item.tombstone).where(
                Item.source_id == source_id,
                Item.identity.in_(wanted[chunk : chunk + 500]),  # type: ignore[attr-defined]
            )
        ).all()
        for item_id, identity, content_hash, tombstone in rows:
            found[identity] = StoredItem(
                id=item_id or 0, identity=identity, content_hash=content_hash, tombstone=tombstone
            )
    return found


@dataclass(frozen=True)
class StoreReport:
    inserted: int = 0
    updated: int = 0
    ignored: int = 0


def _apply_entry(item: Item, entry: NormalizedEntry) -> None:
    item.guid = entry.guid
    item.link = entry.link
    item.title = entry.title[:2000]
    item.summary_html = entry.summary_html
    item.content_html = entry.content_html
    item.text = entry.text
    item.published_at = entry.published_at
    item.image = entry.image
    item.author = entry.author[:500] if entry.author else None
    item.language = entry.language
    item.tickers = list(entry.tickers)
    item.links = dict(entry.links)
    item.content_hash = entry.content_hash


def store_decisions(
    session: Session, source: Source, decisions: Sequence[Decision], now: datetime
) -> StoreReport:
    """Insert and update items of one source inside the caller's transaction."""
    assert source.id is not None
    inserted = updated = ignored = 0
    updates = {d.item_id: d for d in decisions if d.action == "update" and d.item_id is not None}
    existing: dict[int, Item] = {}
    if updates:
        for item in session.exec(select(Item).where(Item.id.in_(list(updates)))).all():  # type: ignore[union-attr]
            assert item.id is not None
            existing[item.id] = item
    new_rows = []
    for d in decisions:
        if d.action == "insert":
            item = Item(
                source_id=source.id,
                identity=d.identity,
                locale=source.locale,
                published_at=d.entry.published_at,
                fetched_at=now,
                updated_at=now,
                content_hash=d.entry.content_hash,
            )
            _apply_entry(item, d.entry)
            new_rows.append(item)
            inserted += 1
        elif d.action == "update" and d.item_id in existing:
            item = existing[d.item_id]
            _apply_entry(item, d.entry)
            item.updated_at = now
            session.add(item)
            if item.story_id is not None:
                session.add(FeedChange(story_id=item.story_id, change="upsert", at=now))
            updated += 1
        else:
            ignored += 1
    session.add_all(new_rows)
    return StoreReport(inserted, updated, ignored)


def record_source_state(
    session: Session,
    source: Source,
    *,
    fetch: FetchResult,
    plan: NextCheck,
    error: str | None,
    bozo: str | None,
    title: str | None,
    now: datetime,
) -> None:
    """Write the polling outcome on the source row and release its lease."""
    values: dict[str, object] = {
        "next_check_at": plan.at,
        "interval_s": plan.interval_s,
        "error_count": plan.error_count,
        "enabled": plan.enabled and source.enabled,
        "last_checked_at": now,
        "last_status": fetch.status,
        "lease_owner": None,
        "lease_until": None,
    }
    if error is None:
        values["last_error"] = None
        if fetch.etag or fetch.last_modified or fetch.status == 200:
            values["etag"] = fetch.etag
            values["last_modified"] = fetch.last_modified
        if not fetch.not_modified:
            values["last_bozo"] = bozo[:2000] if bozo else None
    else:
        values["last_error"] = error[:2000]
    if title and not source.title:
        values["title"] = title[:500]
    session.execute(sa.update(Source).where(Source.id == source.id).values(**values))  # type: ignore[arg-type]

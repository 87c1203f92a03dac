"""Store: one transaction per source update — items upserted, the source row's polling state set.

Also holds the polling policy (``plan_next_check``): a pure function of what the fetch said, so
the back-off and adaptive interval are unit-tested without a database.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

import sqlalchemy as sa

from aggregator.db import DEDUPE_LOCK_KEY
from aggregator.decide import Decision, StoredItem, article_key
from aggregator.fetch import FetchResult
from aggregator.settings import Settings
from aggregator.tables import FEEDCHANGE, ITEM, SOURCE

if TYPE_CHECKING:  # a round of 304s stores no entry: the normalizer is not imported for it
    from sqlmodel import Session

    from aggregator.normalize import NormalizedEntry

    Conn = sa.Connection | Session
    """Where the store writes: a Core connection (the poll round) or an ORM session (callers
    that hold one); both inside the caller's transaction."""


class SourceState(Protocol):
    """What the store reads of a source: a claimed row (``aggregator.poll``) or a ``Source``."""

    @property
    def id(self) -> int | None: ...
    @property
    def locale(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def title(self) -> str | None: ...


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


def backoff_s(settings: Settings, source_id: int, errors: int) -> float:
    """Seconds to wait after the ``errors``-th failure in a row: doubling from ``min_interval_s``
    with ±20 % jitter (seeded by source and count, so reproducible), capped at ``max_backoff_s``."""
    rng = random.Random(source_id * 1_000_003 + errors)
    base = min(float(settings.max_backoff_s), settings.min_interval_s * 2.0 ** min(errors - 1, 30))
    return min(float(settings.max_backoff_s), base * rng.uniform(0.8, 1.2))


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
        delay = backoff_s(settings, source_id, errors)
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


def stored_items(session: Conn, source_id: int, identities: Iterable[str]) -> dict[str, StoredItem]:
    """What is already stored for these identities of one source."""
    wanted = list(set(identities))
    found: dict[str, StoredItem] = {}
    c = ITEM.c
    for chunk in range(0, len(wanted), 500):
        rows = session.execute(
            sa.select(c.id, c.identity, c.content_hash, c.tombstone).where(
                c.source_id == source_id, c.identity.in_(wanted[chunk : chunk + 500])
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
    written: tuple[tuple[int, dict[str, Any]], ...] = ()
    """(item id, the columns set) of every item inserted or updated: what the round extracts
    dedupe features from."""


def _entry_values(entry: NormalizedEntry) -> dict[str, Any]:
    """The item columns an entry sets, on insert and on update alike."""
    return {
        "guid": entry.guid,
        "link": entry.link,
        "title": entry.title[:2000],
        "summary_html": entry.summary_html,
        "content_html": entry.content_html,
        "summary_text": entry.summary_text,
        "text": entry.text,
        "published_at": entry.published_at,
        "image": entry.image,
        "author": entry.author[:500] if entry.author else None,
        "language": entry.language,
        "tickers": list(entry.tickers),
        "links": dict(entry.links),
        "content_hash": entry.content_hash,
    }


_ITEMS = ITEM
_FEED_CHANGES = FEEDCHANGE


def stored_by_article(
    session: Conn, source_id: int, entries: Iterable[NormalizedEntry]
) -> dict[str, StoredItem]:
    """Stored items of one source by :func:`article_key`, for these entries' links (unstable guids)."""
    links = sorted({e.link for e in entries if e.link})
    found: dict[str, StoredItem] = {}
    for chunk in range(0, len(links), 500):
        c = _ITEMS.c
        rows = session.execute(
            sa.select(c.id, c.identity, c.content_hash, c.tombstone, c.link, c.title).where(
                c.source_id == source_id, c.link.in_(links[chunk : chunk + 500])
            )
        ).all()
        for item_id, identity, content_hash, tombstone, link, title in rows:
            key = article_key(link, title)
            if key is not None:
                found[key] = StoredItem(
                    id=item_id or 0, identity=identity, content_hash=content_hash, tombstone=tombstone
                )
    return found


# Executed with a list of rows: the SET clause is made of the rows' column keys.
_UPDATE_ITEM = sa.update(_ITEMS).where(_ITEMS.c.id == sa.bindparam("item_id"))


def store_decisions(
    session: Conn, source: SourceState, decisions: Sequence[Decision], now: datetime
) -> StoreReport:
    """Insert and update items of one source inside the caller's transaction.

    Plain rows, not ORM objects: one multi-row INSERT and one executemany UPDATE per source
    (building and flushing ``Item`` objects cost as much as parsing the feed).
    """
    assert source.id is not None
    new_rows: list[dict[str, Any]] = []
    changed: dict[int, dict[str, Any]] = {}
    for d in decisions:
        if d.action == "insert":
            row = _entry_values(d.entry)
            row.update(
                source_id=source.id,
                story_id=None,
                identity=d.identity,
                locale=source.locale,
                fetched_at=now,
                updated_at=now,
                tombstone=False,
            )
            new_rows.append(row)
        elif d.action == "update" and d.item_id is not None:
            changed[d.item_id] = _entry_values(d.entry)
    stories: dict[int, int | None] = {}
    if changed:
        found = session.execute(
            sa.select(_ITEMS.c.id, _ITEMS.c.story_id).where(_ITEMS.c.id.in_(sorted(changed)))
        )
        stories = {item_id: story_id for item_id, story_id in found}
    updates = [
        {**values, "item_id": item_id, "updated_at": now}
        for item_id, values in changed.items()
        if item_id in stories
    ]
    written: list[tuple[int, dict[str, Any]]] = []
    if new_rows:
        ids = session.execute(
            sa.insert(_ITEMS).returning(_ITEMS.c.id, sort_by_parameter_order=True), new_rows
        ).scalars()
        written.extend(zip(ids, new_rows, strict=True))
    if updates:
        from aggregator.entries import lock_story_writers, refresh_story_entries

        if any(stories[u["item_id"]] is not None for u in updates):
            lock_story_writers(session)  # before the item rows, see ``lock_story_writers``
        session.execute(_UPDATE_ITEM, updates)
        written.extend((u["item_id"], u) for u in updates)
        story_changes = [
            {"story_id": story_id, "change": "upsert", "at": now}
            for story_id in (stories[u["item_id"]] for u in updates)
            if story_id is not None
        ]
        if story_changes:
            session.execute(sa.insert(_FEED_CHANGES), story_changes)
            refresh_story_entries(session, {cast(int, c["story_id"]) for c in story_changes})
    ignored = len(decisions) - len(new_rows) - len(updates)
    return StoreReport(len(new_rows), len(updates), ignored, tuple(written))


STORE_FEATURES = (
    sa.update(_ITEMS)
    .where(_ITEMS.c.id == sa.bindparam("item_id"))
    .values(dedupe_features=sa.bindparam("blob"), dedupe_key=sa.bindparam("key"))
)


def store_features(engine: sa.Engine, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Store extracted dedupe features (``item_id``, ``blob``, ``key`` per row) in one transaction
    of their own: a cache write, so it never waits for a story writer. On PostgreSQL it stores only
    when the story writers' lock is free at once (writers that update items take it before the item
    rows, so taking it first keeps the two from deadlocking), in shared mode: feature stores of the
    round's sources run side by side. Returns whether it stored. A row whose item changed meanwhile
    keeps a key its item no longer matches: the run re-extracts it."""
    if not rows:
        return True
    with engine.begin() as conn:
        if (
            conn.dialect.name == "postgresql"
            and not conn.execute(
                sa.text("SELECT pg_try_advisory_xact_lock_shared(:k)"), {"k": DEDUPE_LOCK_KEY}
            ).scalar_one()
        ):
            return False
        conn.execute(STORE_FEATURES, list(rows))
    return True


def record_source_state(
    session: Conn,
    source: SourceState,
    *,
    fetch: FetchResult,
    plan: NextCheck,
    error: str | None,
    bozo: str | None,
    title: str | None,
    now: datetime,
    skipped: int = 0,
) -> None:
    """Write the polling outcome on the source row and release its lease; ``skipped`` malformed
    entries are added to its count."""
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
    if skipped:
        values["skipped_entries"] = SOURCE.c.skipped_entries + skipped
    session.execute(sa.update(SOURCE).where(SOURCE.c.id == source.id).values(**values))


def items_without_story(engine: sa.Engine) -> bool:
    """Whether any item still waits for dedupe to give it a story (one indexed lookup)."""
    with engine.connect() as conn:
        query = sa.select(sa.literal(1)).select_from(_ITEMS).where(_ITEMS.c.story_id.is_(None)).limit(1)
        return conn.execute(query).first() is not None

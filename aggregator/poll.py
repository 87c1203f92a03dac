"""One polling round: claim due sources, then fetch → parse → normalize → decide → store each.

A broken feed is data: its error lands on its source row and the round goes on. Parsing and
normalizing run in worker threads; storing runs one source per transaction.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col

from aggregator.db import session_scope
from aggregator.decide import decide, entry_identity
from aggregator.fetch import Fetcher, FetchResult
from aggregator.models import Source, utcnow
from aggregator.normalize import NormalizedEntry, normalize_entry
from aggregator.parse import ParsedFeed, parse_feed
from aggregator.settings import Settings
from aggregator.store import plan_next_check, record_source_state, store_decisions, stored_items


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class SourceOutcome:
    source_id: int
    url: str
    status: int | None = None
    inserted: int = 0
    updated: int = 0
    error: str | None = None
    not_modified: bool = False


@dataclass
class PollReport:
    outcomes: list[SourceOutcome] = field(default_factory=list)

    @property
    def polled(self) -> int:
        return len(self.outcomes)

    @property
    def inserted(self) -> int:
        return sum(o.inserted for o in self.outcomes)

    @property
    def updated(self) -> int:
        return sum(o.updated for o in self.outcomes)

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.error)

    @property
    def not_modified(self) -> int:
        return sum(1 for o in self.outcomes if o.not_modified)


def claim_due_sources(
    engine: sa.Engine,
    owner: str,
    *,
    now: datetime,
    lease_s: int,
    limit: int = 5000,
    all_sources: bool = False,
) -> list[Source]:
    """Lease up to ``limit`` due sources to ``owner``.

    One ``UPDATE … WHERE id IN (due sources) RETURNING`` statement, so a claim is atomic on SQLite;
    on PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED`` so concurrent workers
    never claim the same source. A lease left by a crashed worker expires after ``lease_s``.
    """
    lease_free = sa.or_(col(Source.lease_until).is_(None), col(Source.lease_until) < now)
    due = sa.select(col(Source.id)).where(col(Source.enabled), lease_free)
    if not all_sources:
        due = due.where(col(Source.next_check_at) <= now)
    due = due.order_by(col(Source.next_check_at), col(Source.id)).limit(limit)
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        sa.update(Source)
        .where(col(Source.id).in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
        .returning(Source)
    )
    with session_scope(engine) as session:
        rows = list(session.execute(claim, execution_options={"synchronize_session": False}).scalars().all())
        for row in rows:
            session.expunge(row)
    rows.sort(key=lambda s: (s.next_check_at, s.id or 0))
    return rows


def _prepare(
    fetch: FetchResult, source: Source, now: datetime
) -> tuple[ParsedFeed | None, list[NormalizedEntry]]:
    """Parse and normalize a fetched body (CPU work, runs in a worker thread)."""
    if not fetch.ok or fetch.body is None:
        return None, []
    feed_url = fetch.final_url or source.url
    parsed = parse_feed(fetch.body, url=feed_url, content_type=fetch.content_type)
    # Relative entry links resolve against the site, as readers do (Miniflux does the same).
    site = parsed.link if parsed.link and parsed.link.startswith(("http://", "https://")) else feed_url
    entries = [
        normalize_entry(raw, feed_url=site, locale=source.locale, fetched_at=now) for raw in parsed.entries
    ]
    return parsed, entries


class SourceUpdater:
    """Runs one source through the pipeline and stores the outcome in one transaction."""

    def __init__(
        self, engine: sa.Engine, settings: Settings, fetcher: Fetcher, executor: Executor | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.fetcher = fetcher
        self.executor = executor
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    async def update(self, source: Source) -> SourceOutcome:
        assert source.id is not None
        outcome = SourceOutcome(source_id=source.id, url=source.url)
        fetch = await self.fetcher.fetch(source.url, etag=source.etag, last_modified=source.last_modified)
        outcome.status = fetch.status
        outcome.not_modified = fetch.not_modified
        now = utcnow()
        loop = asyncio.get_running_loop()
        try:
            parsed, entries = await loop.run_in_executor(self.executor, _prepare, fetch, source, now)
        except Exception as e:  # a parser bug must not stop the round
            parsed, entries = None, []
            outcome.error = f"parse failed: {type(e).__name__}: {e}"[:500]
        if outcome.error is None:
            outcome.error = fetch.error if not fetch.not_modified else None
            if outcome.error is None and parsed is not None and parsed.error:
                outcome.error = parsed.error
        await loop.run_in_executor(None, self._store, source, fetch, parsed, entries, outcome, now)
        return outcome

    def _store(
        self,
        source: Source,
        fetch: FetchResult,
        parsed: ParsedFeed | None,
        entries: list[NormalizedEntry],
        outcome: SourceOutcome,
        now: datetime,
    ) -> None:
        plan = plan_next_check(
            settings=self.settings,
            now=now,
            source_id=outcome.source_id,
            error_count=source.error_count,
            fetch=fetch,
            published=[e.published_at for e in entries],
            failed=outcome.error is not None,
        )
        if self._write_lock is not None:
            with self._write_lock:
                self._write(source, fetch, parsed, entries, outcome, now, plan)
        else:
            self._write(source, fetch, parsed, entries, outcome, now, plan)

    def _write(
        self,
        source: Source,
        fetch: FetchResult,
        parsed: ParsedFeed | None,
        entries: list[NormalizedEntry],
        outcome: SourceOutcome,
        now: datetime,
        plan: object,
    ) -> None:
        from aggregator.store import NextCheck

        assert isinstance(plan, NextCheck)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            if entries:
                stored = stored_items(session, outcome.source_id, (entry_identity(e) for e in entries))
                report = store_decisions(session, source, decide(entries, stored), now)
                outcome.inserted, outcome.updated = report.inserted, report.updated
            record_source_state(
                session,
                source,
                fetch=fetch,
                plan=plan,
                error=outcome.error,
                bozo=parsed.bozo if parsed else None,
                title=parsed.title if parsed else None,
                now=now,
            )


Progress = Callable[[SourceOutcome, int, int], None]


def print_progress(outcome: SourceOutcome, done: int, total: int) -> None:
    state = (
        "304"
        if outcome.not_modified
        else (
            f"error: {outcome.error}"
            if outcome.error
            else f"+{outcome.inserted} new, {outcome.updated} updated"
        )
    )
    print(f"[{done}/{total}] {outcome.url} {state}", file=sys.stderr, flush=True)


async def poll_round(
    engine: sa.Engine,
    settings: Settings,
    *,
    fetcher: Fetcher | None = None,
    owner: str | None = None,
    progress: Progress | None = None,
    all_sources: bool = False,
    executor: Executor | None = None,
) -> PollReport:
    """Claim every due source and update each; returns what happened, never raises for a feed."""
    owner = owner or worker_id()
    report = PollReport()
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    try:
        updater = SourceUpdater(engine, settings, fetcher, executor)
        sources = await asyncio.to_thread(
            claim_due_sources, engine, owner, now=utcnow(), lease_s=settings.lease_s, all_sources=all_sources
        )
        gate = asyncio.Semaphore(settings.fetch_concurrency)

        async def run(source: Source) -> SourceOutcome:
            async with gate:
                try:
                    return await updater.update(source)
                except Exception as e:  # keep the round going; record on the source row
                    outcome = SourceOutcome(
                        source_id=source.id or 0, url=source.url, error=f"{type(e).__name__}: {e}"[:500]
                    )
                    await asyncio.to_thread(_release_with_error, engine, source, outcome.error or "")
                    return outcome

        for fut in asyncio.as_completed([run(s) for s in sources]):
            outcome = await fut
            report.outcomes.append(outcome)
            if progress:
                progress(outcome, report.polled, len(sources))
    finally:
        if own_fetcher:
            await fetcher.aclose()
    return report


def _release_with_error(engine: sa.Engine, source: Source, error: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            sa.update(Source)
            .where(col(Source.id) == source.id)
            .values(
                lease_owner=None,
                lease_until=None,
                last_error=error[:2000],
                error_count=Source.error_count + 1,
                next_check_at=utcnow() + timedelta(seconds=600),
            )
        )

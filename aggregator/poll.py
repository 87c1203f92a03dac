"""One polling round: claim due sources, then fetch → parse → normalize → decide → store each.

A broken feed is data: its error lands on its source row and the round goes on. Parsing and
normalizing are CPU-bound Python, so big bodies go to a pool of worker processes (one per
core: threads would share one core through the GIL) while the event loop fetches and a thread
stores, one source per transaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from aggregator.decide import decide, entry_identity
from aggregator.fetch import Fetcher, FetchResult
from aggregator.settings import Settings
from aggregator.store import (
    backoff_s,
    plan_next_check,
    record_source_state,
    store_decisions,
    store_features,
    stored_by_article,
    stored_items,
)
from aggregator.tables import SOURCE, utcnow

if TYPE_CHECKING:  # the parser, the normalizer and multiprocessing load on the first body: a round
    # of 304s needs none of them
    from concurrent.futures import ProcessPoolExecutor

    from aggregator.normalize import NormalizedEntry
    from aggregator.parse import ParsedFeed


log = logging.getLogger(__name__)

Source = sa.Row[Any]
"""A claimed source: a row of every ``source`` column (``aggregator.tables.SOURCE``); the round
works on Core rows, never on ORM objects (a round of 304s imports neither SQLModel nor the ORM)."""


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
    checked_before: datetime | None = None,
) -> list[Source]:
    """Lease up to ``limit`` due sources to ``owner``.

    One ``UPDATE … WHERE id IN (due sources) RETURNING`` statement, so a claim is atomic on SQLite;
    on PostgreSQL the due rows are locked with ``FOR UPDATE SKIP LOCKED`` so concurrent workers
    never claim the same source. A lease left by a crashed worker expires after ``lease_s``.
    ``checked_before``: only sources not checked since then (a round polls a source once).
    """
    c = SOURCE.c
    lease_free = sa.or_(c.lease_until.is_(None), c.lease_until < now)
    due = sa.select(c.id).where(c.enabled, lease_free)
    if not all_sources:
        due = due.where(c.next_check_at <= now)
    if checked_before is not None:
        due = due.where(sa.or_(c.last_checked_at.is_(None), c.last_checked_at < checked_before))
    due = due.order_by(c.next_check_at, c.id).limit(limit)
    if engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        sa.update(SOURCE)
        .where(c.id.in_(due.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_s))
        .returning(*SOURCE.c)
    )
    with engine.begin() as conn:
        rows = list(conn.execute(claim).all())
    rows.sort(key=lambda s: (s.next_check_at, s.id or 0))
    return rows


PROCESS_MIN_BYTES = 16 * 1024
"""Smaller bodies are parsed in a thread: sending them to a process would cost about what it saves."""


class ParsePool:
    """Where parse + normalize run: worker processes for big bodies, a thread for small ones.

    The processes start on first use (a round of 304s starts none) from a fork server that has
    imported the parser once: safe next to the event loop's and the store's threads (a plain
    ``fork`` would copy their locks mid-use) and cheaper than ``spawn``, which re-imports
    everything in each worker. Until they are up (a second or so), big bodies are parsed in a
    thread too, so the first fetched feeds do not wait for them. They live until
    :meth:`shutdown`: one pool per ``poll --once`` round, one per worker process for the
    scheduler. With one core there is nothing to gain, so no processes. Results do not depend
    on where a body was parsed: :func:`prepare_feed` is pure.
    """

    def __init__(self, workers: int | None = None, *, min_process_bytes: int = PROCESS_MIN_BYTES) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.min_process_bytes = min_process_bytes
        self._processes: ProcessPoolExecutor | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread: ThreadPoolExecutor | None = None

    def thread(self) -> Executor:
        """The one thread that parses what the processes do not take (small bodies, bodies that
        come in before the workers are up). One: parsing holds the GIL, so more threads would
        parse no faster and would keep the event loop and the stores from running."""
        with self._lock:
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="parse")
            return self._thread

    def executor_for(self, body_bytes: int) -> Executor | None:
        """The process pool for a body this big once it is up, else None (a thread)."""
        if self.workers < 2 or body_bytes < self.min_process_bytes:
            return None
        with self._lock:
            if self._processes is None:
                from aggregator.procpool import forkserver_pool

                # The dedupe package too: imported once in the fork server rather than once per
                # worker with its first ``extract_features`` job (~0.3 CPU s each); bodies that
                # come in meanwhile are parsed in a thread.
                self._processes = forkserver_pool(
                    self.workers, preload=["__main__", "aggregator.normalize", "aggregator.dedupe.ingest"]
                )
                self._ready = threading.Event()
                threading.Thread(
                    target=self._start, args=(self._processes, self._ready), name="parse-pool", daemon=True
                ).start()
            return self._processes if self._ready.is_set() else None

    def background(self) -> Executor | None:
        """The process pool for work nobody waits on (dedupe features), started if need be; work
        submitted before the workers are up waits for them. None with one core."""
        if self.workers < 2:
            return None
        with self._lock:
            processes = self._processes
        if processes is None:
            self.executor_for(self.min_process_bytes)
            with self._lock:
                processes = self._processes
        return processes

    def _start(self, processes: ProcessPoolExecutor, ready: threading.Event) -> None:
        """Start every worker (off the event loop: the first start waits for the fork server)."""
        try:
            for started in [processes.submit(os.getpid) for _ in range(self.workers)]:
                started.result()
        except Exception:  # shut down or broken meanwhile: bodies stay on threads
            return
        ready.set()

    def discard(self, broken: Executor) -> None:
        """Drop a pool whose worker died; the next big body starts a fresh one."""
        with self._lock:
            if self._processes is broken:
                self._processes = None
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            processes, self._processes = self._processes, None
            thread, self._thread = self._thread, None
        if processes is not None:
            processes.shutdown(wait=True, cancel_futures=True)
        if thread is not None:
            thread.shutdown(wait=True, cancel_futures=True)


class SourceUpdater:
    """Runs one source through the pipeline and stores the outcome in one transaction.

    ``executor``: a :class:`ParsePool`, or any executor to run every parse in (the profiler
    passes one that runs work inline), or None for the event loop's thread pool.
    """

    def __init__(
        self,
        engine: sa.Engine,
        settings: Settings,
        fetcher: Fetcher,
        executor: Executor | ParsePool | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.fetcher = fetcher
        self.executor = executor
        # SQLite has one writer: serialize this process's source transactions instead of retrying.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )
        self._extracting: set[asyncio.Task[None]] = set()
        # Stores run on threads of their own: queued behind parse jobs on the event loop's shared
        # pool, a stored feed waited for bodies fetched after it. SQLite has one writer: one thread.
        self._stores = ThreadPoolExecutor(
            1 if engine.dialect.name == "sqlite" else 4, thread_name_prefix="store"
        )
        self.unchanged: list[tuple[Source, FetchResult, SourceOutcome, datetime]] = []
        """Sources that answered 304, waiting for :meth:`store_unchanged` (the round batches them)."""

    async def _prepare(
        self, fetch: FetchResult, source: Source, now: datetime
    ) -> tuple[ParsedFeed | None, list[NormalizedEntry]]:
        """Parse and normalize a fetched body off the event loop."""
        if not fetch.ok or fetch.body is None:
            return None, []
        from concurrent.futures.process import BrokenProcessPool

        from aggregator.normalize import prepare_feed

        job = functools.partial(
            prepare_feed,
            fetch.body,
            url=fetch.final_url or source.url,
            content_type=fetch.content_type,
            locale=source.locale,
            fetched_at=now,
        )
        loop = asyncio.get_running_loop()
        if not isinstance(self.executor, ParsePool):
            return await loop.run_in_executor(self.executor, job)
        executor = self.executor.executor_for(len(fetch.body))
        if executor is None:
            return await loop.run_in_executor(self.executor.thread(), job)
        try:
            return await loop.run_in_executor(executor, job)
        except BrokenProcessPool:  # a worker died (killed, out of memory): this body goes to a thread
            self.executor.discard(executor)
            return await loop.run_in_executor(self.executor.thread(), job)

    async def update(self, source: Source) -> SourceOutcome:
        assert source.id is not None
        outcome = SourceOutcome(source_id=source.id, url=source.url)
        fetch = await self.fetcher.fetch(source.url, etag=source.etag, last_modified=source.last_modified)
        outcome.status = fetch.status
        outcome.not_modified = fetch.not_modified
        now = utcnow()
        loop = asyncio.get_running_loop()
        try:
            parsed, entries = await self._prepare(fetch, source, now)
        except Exception as e:  # a parser bug must not stop the round
            parsed, entries = None, []
            outcome.error = f"parse failed: {type(e).__name__}: {e}"[:500]
        if outcome.error is None:
            outcome.error = fetch.error if not fetch.not_modified else None
            if outcome.error is None and parsed is not None and parsed.error:
                outcome.error = parsed.error
        if fetch.not_modified and outcome.error is None:
            self.unchanged.append((source, fetch, outcome, now))  # stored with the round's next batch
            return outcome
        written = await loop.run_in_executor(
            self._stores, self._store, source, fetch, parsed, entries, outcome, now
        )
        if written:
            task = asyncio.create_task(self._extract_features(source, written))
            self._extracting.add(task)
            task.add_done_callback(self._extracting.discard)
        return outcome

    async def _extract_features(self, source: Source, written: list[tuple[int, dict[str, Any]]]) -> None:
        """Extract and store the dedupe features of the items just written, in the parse processes
        while the round fetches on (``aggregator.dedupe.ingest``): a dedupe run then finds them
        stored and only clusters. A cache: whatever fails here, the run extracts itself."""
        executor = self.executor.background() if isinstance(self.executor, ParsePool) else self.executor
        if executor is None:
            return
        from concurrent.futures.process import BrokenProcessPool

        items = [
            {
                "id": item_id,
                "locale": source.locale,
                "outlet": source.outlet_id,
                **{name: values[name] for name in _DOC_COLUMNS},
            }
            for item_id, values in written
        ]
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(executor, extract_features, items)
            await loop.run_in_executor(self._stores, self._store_features, rows)
        except BrokenProcessPool:
            if isinstance(self.executor, ParsePool):
                self.executor.discard(executor)
        except Exception as e:  # a bug or a database hiccup costs the cache, never the round
            log.warning(
                "dedupe features of %d items from %s not stored: %s: %s",
                len(items),
                source.url,
                type(e).__name__,
                e,
            )

    def _store_features(self, rows: list[dict[str, Any]]) -> None:
        with self._write_lock:
            store_features(self.engine, rows)

    async def cancel_extraction(self) -> None:
        pending = set(self._extracting)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def close(self) -> None:
        """Let the store threads go (the end of a round; every store has been awaited)."""
        self._stores.shutdown(wait=True)

    async def drain(self) -> None:
        """Wait for the feature extraction still running (the end of a round)."""
        while self._extracting:
            await asyncio.wait(set(self._extracting))

    def take_unchanged(self) -> list[tuple[Source, FetchResult, SourceOutcome, datetime]]:
        """The 304s waiting to be stored (taken on the event loop, stored by :meth:`store_unchanged`)."""
        batch, self.unchanged = self.unchanged, []
        return batch

    def store_unchanged(self, batch: list[tuple[Source, FetchResult, SourceOutcome, datetime]]) -> None:
        """Record sources that answered 304 — their next check, validators, lease released — in one
        transaction for the batch: a 304 writes nothing else, and a round of them is mostly its
        statements' overhead otherwise (one transaction each). Lost with the process, they cost
        only a re-poll once their leases expire."""
        if not batch:
            return
        with self._write_lock, self.engine.begin() as conn:
            for source, fetch, outcome, now in batch:
                self._record_state(conn, source, fetch, outcome, now)

    def _record_state(
        self,
        conn: sa.Connection,
        source: Source,
        fetch: FetchResult,
        outcome: SourceOutcome,
        now: datetime,
        parsed: ParsedFeed | None = None,
        entries: list[NormalizedEntry] | None = None,
    ) -> None:
        """The source's next check, validators and outcome on its row, its lease released."""
        plan = plan_next_check(
            settings=self.settings,
            now=now,
            source_id=outcome.source_id,
            error_count=source.error_count,
            fetch=fetch,
            published=[e.published_at for e in entries or ()],
            failed=outcome.error is not None,
        )
        record_source_state(
            conn,
            source,
            fetch=fetch,
            plan=plan,
            error=outcome.error,
            bozo=parsed.bozo if parsed else None,
            title=parsed.title if parsed else None,
            now=now,
            skipped=parsed.skipped if parsed else 0,
        )

    def _store(
        self,
        source: Source,
        fetch: FetchResult,
        parsed: ParsedFeed | None,
        entries: list[NormalizedEntry],
        outcome: SourceOutcome,
        now: datetime,
    ) -> list[tuple[int, dict[str, Any]]]:
        """Store the outcome; returns (item id, columns) of the items inserted or updated."""
        written: list[tuple[int, dict[str, Any]]] = []
        with self._write_lock, self.engine.begin() as conn:
            if entries:
                stored = stored_items(conn, outcome.source_id, (entry_identity(e) for e in entries))
                unknown = [e for e in entries if e.guid and entry_identity(e) not in stored]
                twins = stored_by_article(conn, outcome.source_id, unknown) if unknown else {}
                report = store_decisions(conn, source, decide(entries, stored, twins), now)
                outcome.inserted, outcome.updated = report.inserted, report.updated
                written = list(report.written)
            self._record_state(conn, source, fetch, outcome, now, parsed, entries)
        return written


_DOC_COLUMNS = ("link", "guid", "title", "text", "published_at", "image", "links", "tickers", "language")
"""The stored item columns dedupe features are extracted from (``aggregator.dedupe.ingest.doc_from``)."""


def extract_features(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs in a parse process: the stored features of ``items``. The dedupe package is imported
    here, never in the round's own process (a round of 304s must not pay for it)."""
    from aggregator.dedupe.ingest import encoded_features

    return encoded_features(items)


Progress = Callable[[SourceOutcome, int, int], None]


def release_leases(engine: sa.Engine, owner: str) -> int:
    """Give back every lease ``owner`` still holds, leaving each source's schedule as it was.

    A worker runs one round at a time, so between rounds any lease under its name is left over
    from a round the database cut short or a stop cancelled: the source is due again at once
    instead of waiting for the lease to expire. Returns how many were released."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(SOURCE).where(SOURCE.c.lease_owner == owner).values(lease_owner=None, lease_until=None)
        )
        return int(result.rowcount or 0)


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
    executor: Executor | ParsePool | None = None,
) -> PollReport:
    """Update due sources until none is left; returns what happened, never raises for a feed.

    Claims are bounded: the round leases only as many sources as it has free fetch slots
    (``fetch_concurrency``) and claims again once half of them are free (sources that answered
    304 are recorded together just before, :meth:`SourceUpdater.store_unchanged`), so N workers share the due
    sources by how fast each works, and a worker that dies loses only the few leases it holds,
    which expire after ``lease_s``. A source is polled at most once per round. Without an
    ``executor`` the round parses in its own :class:`ParsePool`, shut down at the end.
    """
    owner = owner or worker_id()
    report = PollReport()
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(settings)
    own_pool = executor is None
    executor = executor or ParsePool()
    in_flight: set[asyncio.Task[SourceOutcome]] = set()
    updater = SourceUpdater(engine, settings, fetcher, executor)
    started_tasks: list[asyncio.Task[SourceOutcome]] = []
    try:
        started = utcnow()
        slots = settings.fetch_concurrency
        refill = max(1, slots // 2)  # claim again once this many slots are free, not at every one
        claimed = 0
        more = True

        async def run(source: Source) -> SourceOutcome:
            try:
                return await updater.update(source)
            except Exception as e:  # keep the round going; record on the source row
                outcome = SourceOutcome(
                    source_id=source.id or 0, url=source.url, error=f"{type(e).__name__}: {e}"[:500]
                )
                await asyncio.to_thread(_release_with_error, engine, settings, source, outcome.error or "")
                return outcome

        while True:
            free = slots - len(in_flight)
            if more and (free >= refill or not in_flight):
                # The 304s among the sources done are recorded first (their leases released): the
                # round never holds more leases than it has fetch slots.
                await asyncio.to_thread(updater.store_unchanged, updater.take_unchanged())
                claim = asyncio.ensure_future(
                    asyncio.to_thread(
                        claim_due_sources,
                        engine,
                        owner,
                        now=utcnow(),
                        lease_s=settings.lease_s,
                        limit=free,
                        all_sources=all_sources,
                        checked_before=started,
                    )
                )
                try:
                    batch = await asyncio.shield(claim)
                except asyncio.CancelledError:
                    # Stopped mid-claim: the claim's thread runs on and commits its leases. Wait
                    # for it, so the release that follows a cancelled round sees them too.
                    await asyncio.wait([claim])
                    raise
                more = len(batch) == free  # fewer: nothing else is due now; the next tick looks again
                claimed += len(batch)
                new = [asyncio.create_task(run(s)) for s in batch]
                in_flight.update(new)
                started_tasks += new
            if not in_flight:
                await asyncio.to_thread(updater.store_unchanged, updater.take_unchanged())
                await updater.drain()
                break
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome = task.result()
                report.outcomes.append(outcome)
                if progress:
                    progress(outcome, report.polled, claimed)
    finally:
        for task in in_flight:  # cancelled (stop): the leases of these sources expire
            task.cancel()
        if in_flight:
            await asyncio.wait(in_flight)
        await updater.cancel_extraction()  # stopped mid-round: the next dedupe run extracts them
        if updater.unchanged:  # stopped or failed mid-round: what answered 304 is kept if it can be
            try:
                await asyncio.to_thread(updater.store_unchanged, updater.take_unchanged())
            except sa.exc.SQLAlchemyError as e:  # the database is down: their leases expire
                log.warning("304s of this round not recorded (their leases expire): %s", e)
        await asyncio.to_thread(updater.close)
        for task in started_tasks:  # the first error (database down) ends the round; the others
            if task.done() and not task.cancelled():  # are the same outage, not "never retrieved"
                task.exception()
        if own_pool:
            assert isinstance(executor, ParsePool)
            await asyncio.to_thread(executor.shutdown)
        if own_fetcher:
            await fetcher.aclose()
    return report


def _release_with_error(engine: sa.Engine, settings: Settings, source: Source, error: str) -> None:
    """Give up the lease after an unexpected failure, backing off as for any failed fetch."""
    delay = backoff_s(settings, source.id or 0, source.error_count + 1)
    with engine.begin() as conn:
        conn.execute(
            sa.update(SOURCE)
            .where(SOURCE.c.id == source.id)
            .values(
                lease_owner=None,
                lease_until=None,
                last_error=error[:2000],
                last_checked_at=utcnow(),
                error_count=SOURCE.c.error_count + 1,
                next_check_at=utcnow() + timedelta(seconds=delay),
            )
        )

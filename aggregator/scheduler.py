"""The ticker: APScheduler 3.x runs a polling round every ``tick_s``; the database says what is due.

The scheduler holds no job state another process needs: any number of workers can tick side by
side, because sources are claimed with leases (see ``aggregator.poll.claim_due_sources``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.dedupe.lock import DedupeBusy
from aggregator.dedupe.run import run_dedupe
from aggregator.fetch import Fetcher
from aggregator.memory import MemoryTrace, limit_arenas, malloc_trim, trimming
from aggregator.poll import ParsePool, poll_round, release_leases, worker_id
from aggregator.settings import Settings
from aggregator.store import items_without_story
from aggregator.websub import announce

log = logging.getLogger("babelwire.scheduler")
T = TypeVar("T")

TRIM_EVERY_S = 10.0
"""A worker hands freed heap back after a round that polled something, at most this often."""


class Ticker:
    """Owns the scheduler, one fetcher, the parse worker processes and this worker's lease name."""

    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.owner = worker_id()
        self.fetcher: Fetcher | None = None
        self.parse_pool: ParsePool | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._round: asyncio.Task[None] | None = None
        self.memory: MemoryTrace | None = None
        self.trim = trimming()
        self._trimmed = float("-inf")

    async def tick(self) -> None:
        assert self.fetcher is not None
        self._round = asyncio.current_task()
        try:
            # Leases a cut-short or cancelled round of this worker left: due again at once.
            await asyncio.to_thread(release_leases, self.engine, self.owner)
            report = await poll_round(
                self.engine, self.settings, fetcher=self.fetcher, owner=self.owner, executor=self.parse_pool
            )
            # Also with nothing new: items a killed or lock-timed-out dedupe left without a story.
            if report.inserted or report.updated or await asyncio.to_thread(items_without_story, self.engine):
                dedupe = await in_daemon_thread(run_dedupe, self.engine)
                if dedupe.new_stories:
                    await announce(self.settings)
            if self.trim and report.polled and time.monotonic() - self._trimmed >= TRIM_EVERY_S:
                # What the round freed goes back to the system (see aggregator.memory).
                await asyncio.to_thread(malloc_trim)
                self._trimmed = time.monotonic()
            if report.polled:
                log.info(
                    "polled %d sources: %d new, %d updated, %d errors",
                    report.polled,
                    report.inserted,
                    report.updated,
                    report.errors,
                )
        except DedupeBusy as e:  # another worker holds the dedupe lock; the next tick tries again
            log.warning("%s", e)
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as e:
            # The database is down or restarting: the pool reconnects on the next tick, which
            # first releases the leases this round still holds.
            log.warning("polling round stopped, database unavailable (next tick retries): %s", _first_line(e))
        except Exception:  # the ticker must survive a bad round (e.g. database briefly down)
            log.exception("polling round failed")
        except asyncio.CancelledError:  # stop() gave up waiting; the round's leases expire
            log.info("polling round cancelled at stop")
        finally:
            self._round = None
            if self.memory is not None:
                self.memory.after_round()

    def start(self) -> None:
        """Start ticking on the running event loop; the first tick runs at once."""
        from datetime import datetime

        self.fetcher = Fetcher(self.settings)
        self.memory = MemoryTrace.from_env()
        self.parse_pool = ParsePool()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=self.settings.tick_s,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            id="poll",
        )
        self.scheduler.start()

    async def stop(self, grace_s: float = 15.0) -> None:
        """Stop ticking; a round in flight gets ``grace_s`` to finish (it stores what it fetched
        and releases its leases), then is cancelled."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        running = self._round
        if running is not None and not running.done():
            _, pending = await asyncio.wait({running}, timeout=grace_s)
            for task in pending:
                task.cancel()
                await asyncio.wait({task})
        try:  # what a cancelled round still held goes back now, not when its leases expire
            await asyncio.to_thread(release_leases, self.engine, self.owner)
        except sa.exc.SQLAlchemyError as e:  # database down at stop: the leases expire instead
            log.warning("leases not released at stop (they expire): %s", _first_line(e))
        if self.fetcher is not None:
            await self.fetcher.aclose()
        if self.parse_pool is not None:
            await asyncio.to_thread(self.parse_pool.shutdown)


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a daemon thread of its own. A dedupe run can outlast a stop's grace (waiting
    up to two minutes for another worker's lock, or a long run on a loaded machine); the process
    then exits without waiting for it, as after ``kill -9`` (its transaction is rolled back and the
    next run redoes it), instead of hanging in ``asyncio.run``'s executor shutdown."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():  # cancelled at stop
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as e:  # handed to the awaiting task
            result, error = None, e
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name=getattr(fn, "__name__", "task"), daemon=True).start()
    return await done


def lower_cpu_priority(niceness: int) -> int:
    """Run this process at ``niceness`` (``BABELWIRE_BACKGROUND_NICE``) unless it already runs
    lower; returns the niceness it runs at.

    Polling and dedupe are background work: on the cores they share with ``serve``'s API process
    (its scheduler child, or a ``worker`` on the same machine) the kernel then gives the API the
    CPU first, and a dedupe round no longer shows in the API's tail latency. Linux keeps a
    niceness per thread, inherited by the threads and processes started afterwards: call it
    first thing, before any thread or pool starts (``main.py worker`` and ``serve``'s scheduler
    process do), so the event loop's threads, dedupe's thread and the parse/extraction processes
    all run at it."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > current:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
        except OSError as e:  # not allowed here (a container's seccomp policy): run as started
            log.warning("CPU priority left at %d: %s", current, e)
            return current
        return niceness
    return current


PARENT_CHECK_S = 1.0


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the process that started this one is gone (re-parented: no orphan ticks on)."""
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("parent process %d is gone: stopping", parent_pid)
            stop.set()
            return
        await asyncio.sleep(PARENT_CHECK_S)


async def run_worker(engine: sa.Engine, settings: Settings, *, parent_pid: int | None = None) -> None:
    """``main.py worker``: tick until SIGINT or SIGTERM (or cancelled), then stop cleanly.

    The handlers are installed here, not left to Python's defaults: a process started in the
    background by a shell inherits SIGINT ignored, and SIGTERM (what service managers send)
    would otherwise end it without releasing anything. ``parent_pid``: ``serve``'s scheduler
    process also stops when that process is gone."""
    ticker = Ticker(engine, settings)
    if ticker.trim:
        limit_arenas()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid is not None else None
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    ticker.start()
    log.info("worker %s started, ticking every %gs", ticker.owner, settings.tick_s)
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        if watcher is not None:
            watcher.cancel()
        await ticker.stop()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}"[:300]

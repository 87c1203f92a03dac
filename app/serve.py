"""``main.py serve``: the composition of the API, the scheduler's own process, and the demo outlets.

The process that answers requests never polls, parses or dedupes: the scheduler (the same ticker
as ``main.py worker``) runs in a child process started with the API's lifespan and stopped with it
(SIGTERM, a grace period, then SIGKILL), and the child stops by itself when its parent is gone. So
a dedupe round's CPU, memory and paused garbage collector stay out of the API's way.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import uvicorn
from sqlmodel import select

from aggregator.db import session_scope
from aggregator.models import Source
from aggregator.settings import Settings

log = logging.getLogger("babelwire.serve")


def attach_demo_sources(engine: sa.Engine, specs: list[Any]) -> int:
    """Point the demo sources at this run's loopback server, keeping earlier rows (and items)."""
    from aggregator.registry import add_sources

    fresh = []
    with session_scope(engine) as session:
        for spec in specs:
            old = session.exec(
                select(Source).where(Source.outlet_id == spec.outlet, Source.locale == spec.locale)
            ).all()
            moved = False
            path = urlsplit(spec.url).path
            for row in old:
                where = urlsplit(row.url)
                if where.hostname == "127.0.0.1" and where.path == path:
                    if row.url != spec.url:
                        row.url, row.etag, row.last_modified = spec.url, None, None
                        session.add(row)
                    moved = True
            if not moved:
                fresh.append(spec)
    return add_sources(engine, fresh).added if fresh else 0


def serve(
    settings: Settings,
    engine: sa.Engine,
    *,
    host: str,
    port: int,
    demo: bool,
    scheduler: bool,
    api_engine: sa.Engine | None = None,
) -> int:
    """Run the API (on ``api_engine``, default ``engine``) and, with ``scheduler``, the ticker (on
    ``engine``) until interrupted."""
    from aggregator.migrate import require_migrated
    from api.app import create_app

    require_migrated(engine)
    demo_server = None
    if demo:
        from sources.demo.server import DemoFeedServer

        demo_server = DemoFeedServer()
        demo_server.start()
        added = attach_demo_sources(engine, demo_server.sources())
        log.info("demo outlets served at %s (%d new sources)", demo_server.base_url, added)

    app = create_app(settings, api_engine or engine)
    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        child = start_scheduler_process(settings) if scheduler else None
        try:
            async with inner_lifespan(a) as state:
                yield state
        finally:
            if child is not None:
                await asyncio.to_thread(stop_scheduler_process, child)

    app.router.lifespan_context = lifespan
    config = uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=False)
    gc.collect()
    gc.freeze()  # start-up's objects live as long as the process: full collections skip them (tail latency)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    except KeyboardInterrupt:
        pass
    finally:
        if demo_server is not None:
            demo_server.stop()
    return 0


SCHEDULER_STOP_S = 25.0
"""How long ``serve`` waits for its scheduler process after SIGTERM (a round in flight gets 15 s
to store what it fetched, see ``Ticker.stop``) before it kills it."""


def start_scheduler_process(settings: Settings) -> multiprocessing.process.BaseProcess:
    """The scheduler in a fresh (spawned) child process: nothing of the API's state is copied. It
    allocates as a ``worker`` does (``aggregator.memory``: glibc's ``malloc``, trimmed after rounds)."""
    from aggregator.memory import spawning_on_system_malloc

    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=_scheduler_main, args=(settings, os.getpid()), name="babelwire-scheduler", daemon=False
    )
    with spawning_on_system_malloc():  # as `main.py worker`: its trims reach Python's small objects
        child.start()
    log.info("scheduler started in process %s", child.pid)
    return child


def stop_scheduler_process(
    child: multiprocessing.process.BaseProcess, grace_s: float = SCHEDULER_STOP_S
) -> None:
    """SIGTERM (the worker's clean stop), then SIGKILL if it outlives ``grace_s``; reaped either way."""
    if child.is_alive():
        child.terminate()
    child.join(grace_s)
    if child.is_alive():
        log.warning("scheduler process %s did not stop in %gs: killed", child.pid, grace_s)
        child.kill()
        child.join()


def _scheduler_main(settings: Settings, parent_pid: int) -> None:
    """The scheduler process: the worker's ticker until SIGTERM/SIGINT or its parent's death."""
    import contextlib

    from aggregator.db import make_engine
    from aggregator.scheduler import lower_cpu_priority, run_worker

    lower_cpu_priority(settings.background_nice)  # first: every thread and pool process inherits it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "apscheduler.executors.default"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    engine = make_engine(settings)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_worker(engine, settings, parent_pid=parent_pid))
    finally:
        engine.dispose()

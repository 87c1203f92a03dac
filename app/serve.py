"""``main.py serve``: the composition of the API, the ticker in the same event loop, and the demo outlets."""

from __future__ import annotations

import asyncio
import logging
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
        ticker = None
        if scheduler:
            from aggregator.scheduler import Ticker

            ticker = Ticker(engine, settings)
            ticker.start()
        try:
            async with inner_lifespan(a) as state:
                yield state
        finally:
            if ticker is not None:
                await ticker.stop()

    app.router.lifespan_context = lifespan
    config = uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=False)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    except KeyboardInterrupt:
        pass
    finally:
        if demo_server is not None:
            demo_server.stop()
    return 0

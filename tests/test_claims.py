"""Bounded claims, the dedupe lock and the tick that finishes what a killed dedupe left, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.dedupe import lock
from aggregator.dedupe.lock import LOCK_KEY, DedupeBusy
from aggregator.dedupe.run import run_dedupe
from aggregator.fetch import Fetcher
from aggregator.migrate import upgrade
from aggregator.poll import SourceOutcome, poll_round
from aggregator.registry import add_sources
from aggregator.scheduler import Ticker
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.pgserver import PostgresServer


def _feed(n: int) -> bytes:
    items = "".join(
        f"<item><title>Bitcoin note {n}-{k} über Märkte</title><link>https://ex.com/{n}/{k}</link>"
        f"<guid>n{n}-{k}</guid><pubDate>Mon, 0{k + 1} Dec 2026 10:00:00 GMT</pubDate></item>"
        for k in range(2)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>f{n}</title>{items}</channel></rss>'.encode()


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        for n in range(20):
            s.routes[f"/f/{n}.xml"] = Response(
                body=_feed(n), headers={"Content-Type": "application/rss+xml"}, delay_s=0.05
            )
        yield s


def _add(engine: sa.Engine, site: FeedServer) -> None:
    add_sources(
        engine,
        [
            SourceSpec(url=site.url(f"/f/{n}.xml"), outlet="coindesk", locale="en", title=None)
            for n in range(20)
        ],
    )


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_a_round_leases_no_more_sources_than_it_has_fetch_slots(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    _add(engine, site)
    cfg = settings.model_copy(update={"fetch_concurrency": 3, "per_host_concurrency": 8})
    leased: list[int] = []

    def watch(outcome: SourceOutcome, done: int, total: int) -> None:
        leased.append(_count(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL"))

    report = asyncio.run(poll_round(engine, cfg, progress=watch))
    assert report.polled == 20 and report.errors == 0
    assert sorted(site.hits.values()) == [1] * 20
    # Never more than 3 leased at once (one just finished: at most 2 still held when it reports).
    assert leased and max(leased) <= 3
    assert site.max_in_flight <= 3
    assert _count(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0


def test_a_round_polls_a_source_once_even_when_polling_everything(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    _add(engine, site)
    cfg = settings.model_copy(update={"fetch_concurrency": 4, "per_host_concurrency": 8})
    report = asyncio.run(poll_round(engine, cfg, all_sources=True))
    assert report.polled == 20 and sorted(site.hits.values()) == [1] * 20


def test_a_tick_gives_a_story_to_items_a_killed_dedupe_left(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    _add(engine, site)
    asyncio.run(poll_round(engine, settings))  # stored, never deduped (as if killed mid-dedupe)
    assert _count(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 40

    async def one_tick_with_nothing_due() -> None:
        ticker = Ticker(engine, settings)
        ticker.fetcher = Fetcher(settings)
        try:
            await ticker.tick()
        finally:
            await ticker.fetcher.aclose()

    asyncio.run(one_tick_with_nothing_due())
    assert sum(site.hits.values()) == 20  # nothing was due: no fetch
    assert _count(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0


def test_dedupe_waits_for_another_run_then_gives_up_and_leaves_the_items(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "LOCK_WAIT_S", 0.3)
    url = pg_server.create_database()
    settings = Settings(database_url=url, allow_private_feeds=True)
    engine = make_engine(settings)
    upgrade(engine)
    try:
        with FeedServer() as site:
            site.routes["/f/0.xml"] = Response(body=_feed(0), headers={"Content-Type": "application/rss+xml"})
            add_sources(
                engine, [SourceSpec(url=site.url("/f/0.xml"), outlet="coindesk", locale="en", title=None)]
            )
            asyncio.run(poll_round(engine, settings))
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            with pytest.raises(DedupeBusy, match="held the lock"):
                run_dedupe(engine)
            assert _count(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 2
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            holder.commit()
        report = run_dedupe(engine)
        assert report.items == 2
        # The lock wait bound does not outlive the lock: the run's own statements have no timeout.
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "0"
    finally:
        engine.dispose()
        pg_server.drop_database(url)


def test_a_worker_gives_back_the_leases_a_cut_short_round_left(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    """Leases left under a worker's name (a round the database cut short) go back on its next tick
    and at its stop — only its own: another worker's stay."""
    from datetime import UTC, datetime

    from aggregator.poll import claim_due_sources, release_leases

    _add(engine, site)
    now = datetime.now(UTC)
    mine = claim_due_sources(engine, owner="me", now=now, lease_s=600, limit=5)
    theirs = claim_due_sources(engine, owner="them", now=now, lease_s=600, limit=3)
    assert len(mine) == 5 and len(theirs) == 3
    checks_before = _count(engine, "SELECT count(*) FROM source WHERE next_check_at IS NOT NULL")
    assert release_leases(engine, "me") == 5
    assert _count(engine, "SELECT count(*) FROM source WHERE lease_owner = 'me' OR lease_until IS NULL") == 17
    assert _count(engine, "SELECT count(*) FROM source WHERE lease_owner = 'them'") == 3
    assert _count(engine, "SELECT count(*) FROM source WHERE next_check_at IS NOT NULL") == checks_before

    ticker = Ticker(engine, settings)
    ticker.owner = "them"
    asyncio.run(ticker.stop())  # a stop with no round in flight still gives back what it held
    assert _count(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0

"""A round of 304s records its sources in batches (``SourceUpdater.store_unchanged``), yet holds no
more leases than it has fetch slots, and leaves every source checked, validated and released —
on both databases, over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from aggregator.poll import SourceOutcome, poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from aggregator.tables import SOURCE, utcnow
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response

SOURCES = 20


def _feed(n: int) -> bytes:
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>f{n}</title><item><title>ETF flows {n}'
        f"</title><link>https://ex.com/{n}</link><guid>g{n}</guid></item></channel></rss>"
    ).encode()


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        for n in range(SOURCES):
            s.routes[f"/f/{n}.xml"] = Response(
                body=_feed(n), headers={"Content-Type": "application/rss+xml"}, etag=True, delay_s=0.02
            )
        yield s


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_a_round_of_304s_is_recorded_in_batches_within_its_fetch_slots(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    add_sources(
        engine,
        [
            SourceSpec(url=site.url(f"/f/{n}.xml"), outlet="coindesk", locale="en", title=None)
            for n in range(SOURCES)
        ],
    )
    cfg = settings.model_copy(update={"fetch_concurrency": 3, "per_host_concurrency": 8})
    first = asyncio.run(poll_round(engine, cfg, all_sources=True))
    assert first.inserted == SOURCES and first.not_modified == 0
    before = utcnow()
    leased: list[int] = []

    def watch(outcome: SourceOutcome, done: int, total: int) -> None:
        leased.append(_count(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL"))

    second = asyncio.run(poll_round(engine, cfg, all_sources=True, progress=watch))
    assert second.polled == SOURCES and second.not_modified == SOURCES and second.errors == 0
    assert leased and max(leased) <= 3  # never more leases than fetch slots, 304s waiting included
    c = SOURCE.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.last_status, c.last_checked_at, c.next_check_at, c.etag, c.lease_owner)
        ).all()
    assert len(rows) == SOURCES
    for status, checked, next_check, etag, owner in rows:
        assert status == 304 and owner is None and etag  # recorded, validators kept, lease released
        assert checked >= before - timedelta(seconds=1) and next_check > checked

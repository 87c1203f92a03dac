"""A run's stories do not depend on which items it got: stored items around the run (its context)
may be published up to a window after the run's newest newcomer, and must not push older
newcomers out of the clusterer before their other versions arrive.

Found as the ``test_scale_out`` flake (201 or 202 stories instead of 200 on a loaded machine, where
workers' runs get other mixes of sources): a stored item of 6 November in the context of a run of
items from 1 to 4 November split the 1 and 2 November articles, each version its own story."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.dedupe.run import run_dedupe
from aggregator.migrate import upgrade
from aggregator.poll import poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.scale_feeds import ITEMS_PER_FEED, feed, locale_of, path_of

LATER = 16
"""Article group 5 in Spanish: published 6 November, stored first."""
RUN = [0, 1, 2, 3, 4, 5, 9, 10, 11]
"""Groups 0, 1 and 3 in their three locales (1, 2 and 4 November), in one run."""


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        for n in (LATER, *RUN):
            s.routes[path_of(n)] = Response(body=feed(n), headers={"Content-Type": "application/rss+xml"})
        yield s


def test_context_published_later_does_not_split_a_runs_older_articles(
    site: FeedServer, tmp_path: Path
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", allow_private_feeds=True)
    engine = make_engine(settings)
    upgrade(engine)
    for batch in ([LATER], RUN):  # two runs: the later article is the second run's context
        add_sources(
            engine,
            [
                SourceSpec(url=site.url(path_of(n)), outlet="coindesk", locale=locale_of(n), title=None)
                for n in batch
            ],
        )
        asyncio.run(poll_round(engine, settings))
        run_dedupe(engine)
    with engine.connect() as conn:
        sizes = sorted(
            conn.execute(sa.text("SELECT count(*) FROM item GROUP BY story_id")).scalars().all(), reverse=True
        )
    # Each article of groups 0, 1, 3: one story of three versions; group 5's Spanish items alone.
    assert sizes == [3] * (len(RUN) // 3 * ITEMS_PER_FEED) + [1] * ITEMS_PER_FEED
    engine.dispose()

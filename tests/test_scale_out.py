"""Scale-out on real PostgreSQL: 3 ``worker`` and 2 ``serve --no-scheduler`` processes, 300 loopback
sources. Every item stored once, no source polled twice within its interval, the workers share the
sources, the stories equal a single process's, and both API processes serve the same pages."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.livesite import free_port
from tests.pgserver import PostgresServer
from tests.processes import Process, wait_until
from tests.scale_feeds import ITEMS_PER_FEED, feed, locale_of, path_of

SOURCES = 300
POLLED = re.compile(r"polled (\d+) sources")


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        for n in range(SOURCES):
            # A little latency, as real outlets have: the workers' speed is set by their fetch slots.
            s.routes[path_of(n)] = Response(
                body=feed(n), headers={"Content-Type": "application/rss+xml"}, delay_s=0.1
            )
        yield s


def _database(pg: PostgresServer) -> tuple[str, sa.Engine]:
    url = pg.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    return url, engine


def _env(url: str) -> dict[str, str]:
    return dict(
        os.environ,
        BABELWIRE_DATABASE_URL=url,
        BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
        BABELWIRE_TICK_S="0.3",
        BABELWIRE_FETCH_CONCURRENCY="4",
        BABELWIRE_PER_HOST_CONCURRENCY="4",
        BABELWIRE_MIN_INTERVAL_S="3600",  # every source's interval outlasts the test
    )


def _specs(site: FeedServer) -> list[SourceSpec]:
    return [
        SourceSpec(url=site.url(path_of(n)), outlet="coindesk", locale=locale_of(n), title=None)
        for n in range(SOURCES)
    ]


def _scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _stories(engine: sa.Engine) -> set[tuple[tuple[str, str], ...]]:
    """Each story as its members' (source url, guid), canonical member first: ids aside, the stories."""
    sql = """
        SELECT i.story_id, s.url, i.guid, i.id = st.canonical_item_id
        FROM item i JOIN source s ON s.id = i.source_id JOIN story st ON st.id = i.story_id
    """
    members: dict[int, list[tuple[bool, str, str]]] = {}
    with engine.connect() as conn:
        for story_id, url, guid, canonical in conn.execute(sa.text(sql)):
            members.setdefault(story_id, []).append((not canonical, url, guid))
    return {tuple((url, guid) for _, url, guid in sorted(m)) for m in members.values()}


def _story_log(engine: sa.Engine, odd: list[tuple[tuple[str, str], ...]]) -> list[Any]:
    """For a failure message: the items of the odd stories, with their ids, stories and first seen."""
    guids = [guid for members in odd for _, guid in members]
    if not guids:
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, story_id, guid, fetched_at FROM item WHERE guid = ANY(:g) ORDER BY id"),
            {"g": guids},
        )
        return [tuple(map(str, r)) for r in rows]


def _pages(base: str) -> list[tuple[str, Any]]:
    """Every page of the English feed, following the cursor: (ETag, body) each."""
    out: list[tuple[str, Any]] = []
    params: dict[str, Any] = {"locale": "en", "limit": 25}
    with httpx.Client(base_url=base, timeout=30) as client:
        while True:
            r = client.get("/v1/feed", params=params)
            assert r.status_code == 200, r.text
            out.append((r.headers["ETag"], r.json()))
            params["cursor"] = r.json()["next_cursor"]
            if not params["cursor"]:
                return out


def test_three_workers_and_two_api_processes_share_300_sources(
    pg_server: PostgresServer, site: FeedServer
) -> None:
    url, engine = _database(pg_server)
    env = _env(url)
    items = SOURCES * ITEMS_PER_FEED
    ports = [free_port(), free_port()]
    workers = [Process(["worker"], env) for _ in range(3)]
    apis = [Process(["serve", "--no-scheduler", "--port", str(p)], env) for p in ports]
    everyone = workers + apis
    try:
        # The sources appear at once, after every worker ticks: none gets a head start.
        for w in workers:
            w.wait_for(lambda line: "ticking every" in line)
        for a in apis:
            a.wait_for(lambda line: "Uvicorn running" in line)
        add_sources(engine, _specs(site))
        wait_until(lambda: sum(site.hits.values()) >= SOURCES, "every source polled")
        wait_until(
            lambda: (
                _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0
                and _scalar(engine, "SELECT count(*) FROM item") == items
            ),
            "every item stored and deduped",
        )
        time.sleep(1.5)  # five more ticks of each worker: nothing is due again within the interval
        pages = [_pages(f"http://127.0.0.1:{p}") for p in ports]
    finally:
        codes = [p.stop() for p in everyone]
    errs = "\n".join(p.stderr for p in everyone)
    assert codes == [0] * len(everyone), errs
    assert "Traceback" not in errs, errs

    # Polled once each, stored once each, nothing left leased.
    assert sorted(site.hits.get(path_of(n), 0) for n in range(SOURCES)) == [1] * SOURCES
    assert _scalar(engine, "SELECT count(*) FROM item") == items
    assert _scalar(engine, "SELECT count(DISTINCT (source_id, guid)) FROM item") == items
    assert _scalar(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0
    # Each worker polled between 20% and 50% of the sources (from its own log lines).
    shares = [sum(int(m) for m in POLLED.findall(w.stderr)) for w in workers]
    print(f"sources polled per worker: {shares}")
    assert sum(shares) == SOURCES, shares
    assert all(0.2 * SOURCES <= s <= 0.5 * SOURCES for s in shares), shares
    # Stories: one per article group and item, each with its three locales.
    stories = _stories(engine)
    odd = sorted(members for members in stories if len(members) != 3)
    assert len(stories) == SOURCES // 3 * ITEMS_PER_FEED, (len(stories), odd, _story_log(engine, odd))
    assert odd == []
    # Both API processes serve the same pages (bodies and ETags), every story once.
    assert pages[0] == pages[1]
    ids = [e["id"] for _, body in pages[0] for e in body["items"]]
    assert len(ids) == len(set(ids)) == len(stories)

    # The same feeds polled by one process into a fresh database give the same stories.
    single_url, single = _database(pg_server)
    add_sources(single, _specs(site))
    one = Process(["poll", "--once", "--quiet"], _env(single_url))
    assert one.proc.wait(timeout=300) == 0, one.stderr
    assert _stories(single) == stories
    for eng, u in ((engine, url), (single, single_url)):
        eng.dispose()
        pg_server.drop_database(u)

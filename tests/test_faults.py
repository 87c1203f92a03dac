"""Faults in a polling round, on SQLite and PostgreSQL: feeds that replay old items or make up guids,
a name that does not resolve, TLS refused by a plain HTTP server, a server that accepts and never
answers, a redirect to a private address; and a worker killed with ``kill -9`` in the middle of a
poll and of a dedupe run. Nothing crashes, nothing is lost or stored twice, failing sources back
off, the others keep their schedule."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.db import make_engine
from aggregator.dedupe.lock import LOCK_KEY
from aggregator.dedupe.run import run_dedupe
from aggregator.fetch import Fetcher
from aggregator.migrate import upgrade
from aggregator.models import Source
from aggregator.poll import poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from aggregator.store import backoff_s
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, RequestHandler, Response
from tests.pgserver import PostgresServer
from tests.processes import Process
from tests.scale_feeds import ITEMS_PER_FEED, feed, locale_of, path_of

RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def _rss(*items: tuple[str, str, str]) -> bytes:
    """A feed of (guid, title, day of November 2026) items; links follow from the titles."""
    body = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<link>https://news.example/{title.split()[0].lower()}</link>"
        f"<pubDate>{day} Nov 2026 10:00:00 GMT</pubDate></item>"
        for guid, title, day in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


A = ("a", "Alpha: Bitcoin ETF inflows reach 1,2 mil milhões", "02")
B = ("b", "Bravo: イーサリアム 上昇", "03")
C = ("c", "Charlie: Solana validators upgrade", "04")
D = ("d", "Delta: Рынок стейблкоинов растёт", "05")


def _replaying(h: RequestHandler) -> None:
    """A, B; then C, D (A and B rolled off); then A and B again, as a broken cache replays them."""
    n = h.server.feeds.hits[h.path]
    h.reply(200, _rss(*((A, B), (C, D), (A, B))[(n - 1) % 3]), RSS)


def _guid_per_fetch(h: RequestHandler) -> None:
    """The same two articles, with guids made up on every fetch."""
    h.reply(200, _rss((uuid.uuid4().hex, A[1], A[2]), (uuid.uuid4().hex, C[1], C[2])), RSS)


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        s.routes["/good.xml"] = Response(body=_rss(A, B, C, D), headers=RSS)
        s.routes["/replay.xml"] = _replaying
        s.routes["/guids.xml"] = _guid_per_fetch
        s.routes["/hang.xml"] = lambda h: s.stopping.wait(30)
        yield s


def _rows(engine: sa.Engine) -> dict[str, Source]:
    with Session(engine) as session:
        return {s.url.rsplit("/", 1)[-1]: s for s in session.exec(select(Source)).all()}


def _items(engine: sa.Engine) -> list[tuple[str, str]]:
    sql = "SELECT s.url, i.title FROM item i JOIN source s ON s.id = i.source_id ORDER BY 1, 2"
    with engine.connect() as conn:
        return [(url.rsplit("/", 1)[-1], title[:5]) for url, title in conn.execute(sa.text(sql))]


def _scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def test_a_round_survives_bad_feeds_and_the_others_keep_their_schedule(
    engine: sa.Engine, settings: Settings, site: FeedServer
) -> None:
    cfg = settings.model_copy(
        update={"fetch_timeout_s": 0.5, "fetch_concurrency": 2, "min_interval_s": 600, "max_interval_s": 7200}
    )
    urls = [site.url(p) for p in ("/good.xml", "/replay.xml", "/guids.xml", "/hang.xml")]
    add_sources(
        engine,
        [
            SourceSpec(url=u, outlet="coindesk", locale="en", title=None)
            for u in [*urls, "http://feeds.invalid/x", site.url("/tls.xml", scheme="https")]
        ],
    )
    failing = {
        "hang.xml": "timeout after 0.5s",
        "x": "DNS lookup failed for feeds.invalid",
        "tls.xml": "TLS error",
    }
    for n in range(1, 4):
        # Rounds 2 and 3 poll everything, due or not: as if time had passed.
        report = asyncio.run(poll_round(engine, cfg, all_sources=n > 1))
        assert report.polled == 6 and report.errors == 3
        rows = _rows(engine)
        for name, error in failing.items():
            row = rows[name]
            assert row.last_error is not None and row.last_error.startswith(error), row.last_error
            assert row.error_count == n and row.enabled
            assert row.last_checked_at is not None
            wait = (row.next_check_at - row.last_checked_at).total_seconds()
            assert wait == pytest.approx(backoff_s(cfg, row.id or 0, n), abs=0.01)
        for name in ("good.xml", "replay.xml", "guids.xml"):
            row = rows[name]
            assert row.error_count == 0 and row.last_error is None and row.last_checked_at is not None
            wait = (row.next_check_at - row.last_checked_at).total_seconds()
            assert 600 <= wait <= 7200 and row.interval_s == int(wait)
        assert _scalar(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0
    # Nothing is due now: the failing sources wait out their back-off, the good ones their interval.
    assert asyncio.run(poll_round(engine, cfg)).polled == 0
    assert site.hits["/guids.xml"] == 3 and site.hits["/replay.xml"] == 3
    # Every article once: replayed items are not stored again, made-up guids add nothing.
    assert _items(engine) == sorted(
        [("good.xml", t[1][:5]) for t in (A, B, C, D)]
        + [("guids.xml", t[1][:5]) for t in (A, C)]
        + [("replay.xml", t[1][:5]) for t in (A, B, C, D)]
    )
    run_dedupe(engine)
    assert _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0


def test_a_redirect_to_a_private_address_is_refused_and_backs_off(
    engine: sa.Engine, settings: Settings
) -> None:
    """Private feeds disallowed. The loopback server is itself private, so the public side is
    httpx's MockTransport behind a resolver that says public (the fetcher's own tests do the same)."""
    cfg = settings.model_copy(update={"allow_private_feeds": False, "min_interval_s": 600})

    def outlet(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved.xml":
            return httpx.Response(302, headers={"Location": "http://10.0.0.7/admin.xml"})
        return httpx.Response(200, content=_rss(A, B, C), headers=RSS)

    async def resolve(host: str, port: int) -> list[str]:
        return [host] if host[0].isdigit() else ["93.184.216.34"]

    async def one_round() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(outlet)) as client:
            return await poll_round(engine, cfg, fetcher=Fetcher(cfg, client, resolve=resolve))

    add_sources(
        engine,
        [
            SourceSpec(url=f"http://feeds.example.com/{p}", outlet="coindesk", locale="en", title=None)
            for p in ("moved.xml", "fine.xml")
        ],
    )
    report = asyncio.run(one_round())
    assert report.polled == 2 and report.errors == 1 and report.inserted == 3
    rows = _rows(engine)
    moved, fine = rows["moved.xml"], rows["fine.xml"]
    assert moved.last_error == "refused private address 10.0.0.7" and moved.error_count == 1
    assert moved.last_checked_at is not None and fine.last_checked_at is not None
    wait = (moved.next_check_at - moved.last_checked_at).total_seconds()
    assert wait == pytest.approx(backoff_s(cfg, moved.id or 0, 1), abs=0.01)
    assert fine.error_count == 0 and (fine.next_check_at - fine.last_checked_at).total_seconds() >= 600


def test_a_worker_killed_mid_poll_loses_nothing_after_a_restart(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    sources = 60
    env = dict(
        os.environ,
        BABELWIRE_DATABASE_URL=url,
        BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
        BABELWIRE_TICK_S="0.3",
        BABELWIRE_FETCH_CONCURRENCY="4",
        BABELWIRE_PER_HOST_CONCURRENCY="4",
        BABELWIRE_LEASE_S="10",
        BABELWIRE_MIN_INTERVAL_S="3600",
    )
    with FeedServer() as site:
        for n in range(sources):
            site.routes[path_of(n)] = Response(body=feed(n), headers=RSS, delay_s=0.3)
        add_sources(
            engine,
            [
                SourceSpec(url=site.url(path_of(n)), outlet="coindesk", locale=locale_of(n), title=None)
                for n in range(sources)
            ],
        )
        first = Process(["worker"], env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(site.hits.values()) < 12:
                time.sleep(0.02)
        finally:
            first.kill()  # kill -9, mid-round: fetches in flight, leases held
        killed_at = datetime.now().astimezone()
        held = _scalar(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL")
        assert 0 < sum(site.hits.values()) < sources
        assert held <= 4  # bounded claims: only the fetch slots' leases were lost
        second = Process(["worker"], env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                all(site.hits.get(path_of(n)) for n in range(sources))
                and _scalar(engine, "SELECT count(*) FROM item") == sources * ITEMS_PER_FEED
                and _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0
                and _scalar(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0
            ):
                time.sleep(0.2)
        finally:
            code = second.stop()
    assert code == 0 and "Traceback" not in second.stderr, second.stderr
    assert _scalar(engine, "SELECT count(*) FROM item") == sources * ITEMS_PER_FEED
    assert _scalar(engine, "SELECT count(DISTINCT (source_id, guid)) FROM item") == sources * ITEMS_PER_FEED
    assert _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0
    assert _scalar(engine, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0
    # Polled again only where the killed worker held a lease; those waited for it to expire.
    repolled = [n for n in range(sources) if site.hits.get(path_of(n), 0) > 1]
    assert len(repolled) <= held
    with Session(engine) as session:
        for n in repolled:
            row = session.exec(select(Source).where(Source.url == site.url(path_of(n)))).one()
            assert row.last_checked_at is not None
            assert row.last_checked_at >= killed_at + timedelta(seconds=5)
    engine.dispose()
    pg_server.drop_database(url)


def test_a_worker_killed_in_a_dedupe_run_leaves_no_item_without_a_story(pg_server: PostgresServer) -> None:
    """The test holds the dedupe lock, so the worker stops inside its dedupe transaction (items
    stored, stories not yet written); killed there, the next worker's tick, with nothing due,
    gives every item its story."""
    url = pg_server.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    sources = 6
    env = dict(
        os.environ,
        BABELWIRE_DATABASE_URL=url,
        BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
        BABELWIRE_TICK_S="0.3",
        BABELWIRE_MIN_INTERVAL_S="3600",
    )
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    with FeedServer() as site:
        for n in range(sources):
            site.routes[path_of(n)] = Response(body=feed(n), headers=RSS)
        add_sources(
            engine,
            [
                SourceSpec(url=site.url(path_of(n)), outlet="coindesk", locale=locale_of(n), title=None)
                for n in range(sources)
            ],
        )
        with engine.connect() as holder:
            holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            first = Process(["worker"], env)
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not _scalar(engine, waiting):
                    time.sleep(0.05)
                assert _scalar(engine, waiting) == 1, first.stderr
            finally:
                first.kill()
            holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            holder.commit()
        assert _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == sources * ITEMS_PER_FEED
        second = Process(["worker"], env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and _scalar(
                engine, "SELECT count(*) FROM item WHERE story_id IS NULL"
            ):
                time.sleep(0.2)
        finally:
            code = second.stop()
        assert sorted(site.hits.values()) == [1] * sources  # nothing was due: no fetch
    assert code == 0 and "Traceback" not in second.stderr, second.stderr
    assert _scalar(engine, "SELECT count(*) FROM item") == sources * ITEMS_PER_FEED
    assert _scalar(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0
    assert _scalar(engine, "SELECT count(*) FROM story") == sources // 3 * ITEMS_PER_FEED
    engine.dispose()
    pg_server.drop_database(url)

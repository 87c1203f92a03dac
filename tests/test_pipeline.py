"""End to end: fixture feeds served over real loopback HTTP, polled into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.dedupe.run import run_dedupe
from aggregator.models import Item, Source
from aggregator.poll import claim_due_sources, poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response, gzip_bomb

FIXTURES = Path(__file__).parent / "fixtures" / "e2e"
GOOD = {
    "/coindesk/en.xml": ("coindesk", "en", "coindesk-en.xml", "application/rss+xml"),
    "/gate/pt-PT.xml": ("gate", "pt-PT", "gate-pt-PT.xml", "application/atom+xml"),
    "/coinpost/ja.xml": ("coinpost", "ja", "coinpost-ja.xml", "application/rss+xml; charset=utf-8"),
}


def _good_routes(server: FeedServer) -> list[SourceSpec]:
    specs = []
    for path, (outlet, locale, name, ctype) in GOOD.items():
        server.routes[path] = Response(body=(FIXTURES / name).read_bytes(), headers={"Content-Type": ctype})
        specs.append(SourceSpec(url=server.url(path), outlet=outlet, locale=locale, title=None))
    return specs


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


def _items(engine: sa.Engine) -> list[Item]:
    with Session(engine) as session:
        return list(session.exec(select(Item).order_by(Item.id)).all())  # type: ignore[arg-type]


def _sources(engine: sa.Engine) -> dict[str, Source]:
    with Session(engine) as session:
        return {s.url: s for s in session.exec(select(Source)).all()}


def test_poll_stores_normalized_items_and_is_idempotent(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    add_sources(engine, _good_routes(server))
    report = asyncio.run(poll_round(engine, settings))
    assert report.polled == 3 and report.errors == 0
    items = _items(engine)
    # en 3 + pt-PT 2 + ja 4 (the second duplicate guid is ignored)
    assert len(items) == 9
    assert report.inserted == 9
    by_title = {i.title: i for i in items}
    miners = by_title["Bitcoin miners sold 4,200 BTC in a week as fees dropped"]
    assert miners.link == "https://www.coindesk.com/markets/2025/04/02/miners-sell"  # utm_* removed
    assert "<script" not in miners.summary_html and "alert" not in miners.text
    assert miners.published_at == datetime(2025, 4, 2, 8, 10, tzinfo=UTC)
    assert "BTC" in miners.tickers and miners.image == "https://img.example-cdn.net/miners-4200.jpg"
    relative = by_title["Ether staking deposits reach 34.5 million ETH"]
    assert relative.link == "https://www.coindesk.com/markets/2025/04/01/eth-staking"
    assert relative.published_at == datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
    pt = next(i for i in items if i.title.startswith("Mineradores"))
    assert pt.links.get("original") == "https://www.coindesk.com/markets/2025/04/02/miners-sell"
    undated = next(i for i in items if i.title.startswith("日付のない"))
    assert undated.published_at.tzinfo is not None and undated.published_at <= datetime.now(UTC)
    assert any(i.link is None and i.guid == "cp-no-link-1" for i in items)

    run_dedupe(engine)
    assert all(i.story_id is not None for i in _items(engine))

    # A second round of an unchanged feed (forced: nothing is due yet) stores nothing new: 304s.
    again = asyncio.run(poll_round(engine, settings, all_sources=True))
    assert again.polled == 3 and again.inserted == 0 and again.updated == 0
    assert again.not_modified == 3
    assert len(_items(engine)) == 9


def test_changed_entry_is_an_update_not_a_duplicate(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    add_sources(engine, _good_routes(server))
    asyncio.run(poll_round(engine, settings))
    body = (
        (FIXTURES / "coindesk-en.xml")
        .read_bytes()
        .replace(b"the most since January", b"the most since December")
    )
    server.routes["/coindesk/en.xml"] = Response(body=body, headers={"Content-Type": "application/rss+xml"})
    report = asyncio.run(poll_round(engine, settings, all_sources=True))
    assert report.inserted == 0 and report.updated == 1
    assert sum("since December" in i.text for i in _items(engine)) == 1
    assert len(_items(engine)) == 9


BAD: dict[str, Response] = {
    "/bad/not-xml": Response(body=b"\x00\x01 this is not a feed {{{", headers={"Content-Type": "text/plain"}),
    "/bad/html": Response(
        body=b"<!doctype html><html><head><title>Hi</title></head><body><p>shop</p></body></html>",
        headers={"Content-Type": "text/html"},
    ),
    "/bad/404": Response(404, b"missing"),
    "/bad/410": Response(410, b"gone"),
    "/bad/429": Response(429, b"slow down", headers={"Retry-After": "7200"}),
    "/bad/500": Response(500, b"oops"),
    "/bad/loop": Response(302, b"", headers={"Location": "/bad/loop"}),
    "/bad/slow": Response(body=b"<rss/>", delay_s=3.0),
    "/bad/bomb": Response(
        body=gzip_bomb(30 * 1024 * 1024),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
    ),
    "/bad/huge": Response(
        chunks=lambda: itertools.repeat(b"<item>" + b"x" * 65536 + b"</item>", 800),
        headers={"Content-Type": "application/rss+xml"},
    ),
    "/bad/charset": Response(
        body='<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Cafe</title>'
        "<item><title>Caf\u00e9 cr\u00e8me \u00e0 5\u00a0\u20ac</title><link>https://ex.com/a</link>"
        "</item></channel></rss>".encode("cp1252"),
        headers={"Content-Type": "application/rss+xml; charset=utf-8"},
    ),
}


def test_bad_feeds_never_break_the_round(engine: sa.Engine, db_url: str, server: FeedServer) -> None:
    settings = Settings(
        database_url=db_url,
        allow_private_feeds=True,
        fetch_timeout_s=1.0,
        max_body_bytes=5 * 1024 * 1024,
        max_redirects=3,
    )
    specs = _good_routes(server)
    asyncio.run(poll_round(engine, settings)) if add_sources(engine, specs) else None
    stored_before = len(_items(engine))
    assert stored_before == 9
    server.routes.update(BAD)
    # The good feeds now break too: already stored items must stay.
    server.routes["/coindesk/en.xml"] = Response(500, b"down")
    bad_specs = [SourceSpec(url=server.url(p), outlet="forklog", locale="ru", title=None) for p in BAD]
    add_sources(engine, bad_specs)
    report = asyncio.run(poll_round(engine, settings, all_sources=True))
    assert report.polled == 3 + len(BAD)
    assert len(_items(engine)) >= stored_before
    sources = _sources(engine)
    errors = {p: sources[server.url(p)].last_error for p in BAD}
    for path in (
        "/bad/not-xml",
        "/bad/html",
        "/bad/404",
        "/bad/410",
        "/bad/429",
        "/bad/500",
        "/bad/loop",
        "/bad/slow",
        "/bad/bomb",
        "/bad/huge",
    ):
        assert errors[path], f"{path} should record an error"
        assert sources[server.url(path)].error_count == 1
    assert errors["/bad/charset"] is None
    assert not sources[server.url("/bad/410")].enabled
    assert sources[server.url("/bad/404")].enabled
    now = datetime.now(UTC)
    assert sources[server.url("/bad/429")].next_check_at >= now + timedelta(seconds=7000)
    assert sources[server.url("/coindesk/en.xml")].last_error
    # The good sources that still answer were not blocked by the broken ones.
    assert sources[server.url("/gate/pt-PT.xml")].last_error is None
    charset_items = [i for i in _items(engine) if i.link == "https://ex.com/a"]
    assert len(charset_items) == 1 and "Caf" in charset_items[0].title


def test_lease_stops_a_second_worker_from_claiming(engine: sa.Engine, server: FeedServer) -> None:
    add_sources(engine, _good_routes(server))
    now = datetime.now(UTC)
    first = claim_due_sources(engine, "worker-a", now=now, lease_s=60)
    second = claim_due_sources(engine, "worker-b", now=now, lease_s=60)
    assert len(first) == 3 and second == []
    # A crashed worker's lease expires.
    later = claim_due_sources(engine, "worker-b", now=now + timedelta(seconds=61), lease_s=60)
    assert len(later) == 3

"""Kept feed pages (issue 17): a built page is answered again only while the database says it is
current — on SQLite a version read per request, on PostgreSQL a LISTEN connection per process that
the writers' transactions NOTIFY — and until the locale's next pin ends. Real SQLite files, real
PostgreSQL servers, real ``serve`` processes where replicas matter; every wait polls with a timeout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from aggregator.db import make_engine
from aggregator.editorial import Actor
from aggregator.editorial.disclaimers import publish
from aggregator.migrate import upgrade
from aggregator.settings import Settings
from api.caching import PageCache
from api.cursor import TokenSigner
from api.feed import FeedQuery, FeedReader
from tests.livesite import free_port
from tests.pgserver import PostgresServer
from tests.processes import Process, wait_until
from tests.test_api import T0, Member, Seeder, feed, make_client


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    return wait_until(condition, what, timeout_s, poll_s=0.05)


# ---- the cache itself ---------------------------------------------------------------------------


def test_a_page_is_kept_for_its_version_until_its_moment() -> None:
    now = [100.0]
    pages: PageCache[str] = PageCache(max_entries=2, clock=lambda: now[0])
    pages.put("a", 1, "page a", valid_until=110.0)
    assert pages.get("a", 1) == "page a"
    assert pages.get("a", 2) is None  # another version: dropped, not answered later either
    assert pages.get("a", 1) is None
    pages.put("a", 1, "page a", valid_until=110.0)
    now[0] = 110.0
    assert pages.get("a", 1) is None  # its pin ended
    pages.put("b", None, "unknown version")  # the database could not say: never kept
    assert pages.get("b", None) is None and len(pages) == 0
    for key in ("x", "y", "z"):
        pages.put(key, 1, key)
    assert len(pages) == 2 and pages.get("x", 1) is None and pages.get("z", 1) == "z"


# ---- one process, both databases ----------------------------------------------------------------


def _reader(client: Any) -> FeedReader:
    reader: FeedReader = client.app.state.reader
    return reader


def test_a_kept_page_is_answered_and_dropped_by_a_refresh(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    first = seed.story(Member("en"), at=T0)
    with make_client(settings, engine) as c:
        reader = _reader(c)
        query = FeedQuery("en", None, settings.feed_default_limit)
        # on PostgreSQL nothing is kept until the listener is connected
        _wait(lambda: reader.pages_version() is not None, "the pages version")
        assert [e["id"] for e in feed(c, locale="en", limit=settings.feed_default_limit)["items"]] == [first]
        kept = reader.kept_page(query)
        assert kept is not None and [e.story_id for e in kept.entries] == [first]
        again = c.get("/v1/feed", params={"locale": "en"}, headers={"Accept-Encoding": "gzip"})
        assert reader.kept_page(query) is kept and again.status_code == 200
        # a writer (ingest, dedupe, an editor) rewrites entries through refresh_story_entries
        second = seed.story(Member("en"), at=T0 + timedelta(minutes=5))
        _wait(lambda: reader.kept_page(query) is None, "the kept page dropped")
        assert [e["id"] for e in feed(c, locale="en")["items"]] == [second, first]


def test_an_editors_disclaimer_drops_kept_pages(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    seed.story(Member("en", outlet="gate"), at=T0)
    with make_client(settings, engine) as c:
        _wait(lambda: _reader(c).pages_version() is not None, "the pages version")
        before = feed(c, locale="en")["items"][0]["disclaimer"]
        assert before["text"] == "seed third-party en"
        with Session(engine) as s:
            publish(s, Actor("editor"), "third-party", "en", "An editor's words")
            s.commit()
        _wait(
            lambda: feed(c, locale="en")["items"][0]["disclaimer"]["text"] == "An editor's words",
            "the new disclaimer on the page",
        )


def test_a_kept_page_ends_with_the_locales_next_pin(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    until = datetime.now(UTC) + timedelta(seconds=20)  # long enough to see it pinned on a loaded machine
    pinned = seed.story(Member("en"), at=T0 - timedelta(hours=1), pinned=True, pinned_until=until)
    newer = seed.story(Member("en"), at=T0)
    with make_client(settings, engine) as c:
        _wait(lambda: _reader(c).pages_version() is not None, "the pages version")
        assert [(e["id"], e["pinned"]) for e in feed(c, locale="en")["items"]] == [
            (pinned, True),
            (newer, False),
        ]
        _wait(
            lambda: (
                [(e["id"], e["pinned"]) for e in feed(c, locale="en")["items"]]
                == [(newer, False), (pinned, False)]
            ),
            "the ended pin's story in its place",
            timeout_s=90,
        )
        assert datetime.now(UTC) >= until


def test_a_304_from_a_kept_page_has_the_headers_of_a_built_one(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    for i in range(4):
        seed.story(Member("en", summary="<p>" + "words " * 200 + "</p>"), at=T0 + timedelta(minutes=i))
    with make_client(settings, engine) as c:
        reader = _reader(c)
        _wait(lambda: reader.pages_version() is not None, "the pages version")
        for encoding in ("gzip", "identity"):
            built = c.get("/v1/feed", params={"locale": "en"}, headers={"Accept-Encoding": encoding})
            assert built.status_code == 200
            validators = {"If-None-Match": built.headers["etag"], "Accept-Encoding": encoding}
            reader.pages.clear()
            fresh = c.get("/v1/feed", params={"locale": "en"}, headers=validators)
            assert reader.kept_page(FeedQuery("en", None, settings.feed_default_limit)) is not None
            kept = c.get("/v1/feed", params={"locale": "en"}, headers=validators)
            assert fresh.status_code == kept.status_code == 304
            assert dict(fresh.headers) == dict(kept.headers)
            assert kept.headers["etag"] == built.headers["etag"]


# ---- PostgreSQL: replicas and a restart ---------------------------------------------------------


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Any:
    url = pg_server.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    engine.dispose()
    yield url
    pg_server.drop_database(url)


def test_two_api_processes_never_serve_a_page_older_than_a_commit(pg_url: str) -> None:
    """Each ``serve`` process keeps its pages; a write committed through the writers' path is seen
    by both (each keeps serving its page only until the notification arrives)."""
    engine = make_engine(Settings(database_url=pg_url))
    seed = Seeder(engine)
    ids = [seed.story(Member("en"), at=T0)]
    env = dict(os.environ, BABELWIRE_DATABASE_URL=pg_url, BABELWIRE_RESPONSE_CACHE_S="0")
    ports = [free_port(), free_port()]
    apis = [Process(["serve", "--no-scheduler", "--port", str(p)], env) for p in ports]
    try:
        for api in apis:
            api.wait_for(lambda line: "Uvicorn running" in line)
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=30) for p in ports]

        def listed(client: httpx.Client) -> list[int]:
            r = client.get("/v1/feed", params={"locale": "en"})
            assert r.status_code == 200, r.text
            return [e["id"] for e in r.json()["items"]]

        def current(client: httpx.Client) -> Callable[[], bool]:
            return lambda: listed(client) == ids[::-1]

        for round_ in range(3):
            for client in clients:  # warm: each process keeps the page it built
                _wait(current(client), f"round {round_}: the page")
                assert listed(client) == ids[::-1]
            ids.append(seed.story(Member("en"), at=T0 + timedelta(minutes=round_ + 1)))
            for client in clients:
                _wait(current(client), f"round {round_}: the new story")
        for client in clients:
            client.close()
    finally:
        for api in apis:
            api.stop()
        engine.dispose()


def test_the_listener_reconnects_after_a_restart_and_nothing_is_kept_meanwhile() -> None:
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database()
        engine = make_engine(Settings(database_url=url, db_connect_timeout_s=2))
        upgrade(engine)
        Seeder(engine).story(Member("en"), at=T0)
        reader = FeedReader(engine, TokenSigner("s" * 32))
        query = FeedQuery("en", None, 20)
        before = _wait(reader.pages_version, "the listener connected")
        reader.feed_rows(query)
        assert reader.kept_page(query) is not None
        server.stop_server("fast")
        _wait(lambda: reader.pages_version() is None, "the listener noticing the restart")
        assert reader.kept_page(query) is None
        server.start_server()
        after = _wait(reader.pages_version, "the listener reconnected")
        assert after != before
        assert reader.kept_page(query) is None  # a page kept before the restart is never answered

        def read() -> Any:
            try:  # a pooled connection from before the restart fails once (the API's 503), then reconnects
                return reader.feed_rows(query)
            except sa.exc.OperationalError:
                return None

        page = _wait(read, "a page read after the restart")
        assert reader.kept_page(query) is page
        reader.close()
        engine.dispose()
    finally:
        server.stop()

"""Kept feed pages (issue 17): a built page is answered again only while the database says it is
current — on SQLite a version read per request, on PostgreSQL a LISTEN connection per process that
the writers' transactions NOTIFY — and until the locale's next pin ends. Real SQLite files, real
PostgreSQL servers, real ``serve`` processes where replicas matter; every wait polls with a timeout.
"""

from __future__ import annotations

import json
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
from aggregator.entries import (
    IN_CHAIN,
    NOTIFY_MAX_CHARS,
    UNTRANSLATED,
    coarsen,
    feed_key,
    page_changes_payload,
    parse_page_changes,
    refresh_story_entries,
)
from aggregator.migrate import upgrade
from aggregator.models import Item, Story
from aggregator.settings import Settings
from api.caching import EVERYTHING, PageCache, meets, span
from api.cursor import FeedPosition, TokenSigner
from api.errors import Problem
from api.feed import FeedQuery, FeedReader
from core.locales import LOCALES
from tests.livesite import free_port
from tests.pgserver import PostgresServer
from tests.processes import Process, wait_until
from tests.test_api import T0, Member, Seeder, feed, make_client


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    return wait_until(condition, what, timeout_s, poll_s=0.05)


# ---- the cache itself ---------------------------------------------------------------------------


def test_a_page_is_kept_until_a_change_meets_its_span_or_its_moment() -> None:
    now = [100.0]
    t = [datetime(2026, 11, 1, 12, i) for i in range(10)]
    pages: PageCache[str] = PageCache(max_entries=3, clock=lambda: now[0])
    pages.put("first", pages.mark(), "first en", valid_until=110.0, page_span=span("en", t[6], None))
    pages.put("second", pages.mark(), "second en", page_span=span("en", t[2], t[6]))
    pages.put("fr", pages.mark(), "first fr", page_span=span("fr", None, None))
    pages.apply([span("en", t[1], t[1])])  # below both en pages, another locale than fr's
    assert (pages.get("first"), pages.get("second"), pages.get("fr")) == ("first en", "second en", "first fr")
    pages.apply([span("en", t[4], t[4])])  # inside the second page only
    assert (pages.get("first"), pages.get("second"), pages.get("fr")) == ("first en", None, "first fr")
    pages.apply([span("en", t[6], t[6])])  # a change at a page's edge is inside it
    assert pages.get("first") is None
    pages.put("first", pages.mark(), "first en", valid_until=110.0, page_span=span("en", t[6], None))
    now[0] = 110.0
    assert pages.get("first") is None  # its pin ended
    pages.apply([EVERYTHING])
    assert len(pages) == 0
    # a page built from a mark taken before a change that meets it is not kept; one it misses is
    mark = pages.mark()
    pages.apply([span("de", t[5], t[5])])
    assert not pages.put("de", mark, "stale de", page_span=span("de", None, None))
    assert pages.put("en", mark, "en", page_span=span("en", None, None)) and pages.get("en") == "en"
    assert not pages.put("x", None, "unknown mark")  # the database could not say: never kept
    for key in ("x", "y", "z", "w"):
        pages.put(key, pages.mark(), key)
    assert len(pages) == 3 and pages.get("en") is None and pages.get("w") == "w"


def test_an_untranslated_only_change_leaves_the_default_feeds_pages() -> None:
    t = datetime(2026, 11, 1, 12, 0)
    pages: PageCache[str] = PageCache()
    default, wider = (
        span(feed_key("en", IN_CHAIN), None, None),
        span(feed_key("en", UNTRANSLATED), None, None),
    )
    for key, page_span in (("default", default), ("wider", wider)):
        pages.put(key, pages.mark(), key, page_span=page_span)
    pages.apply([span(feed_key("en", UNTRANSLATED), t, t)])  # listed only with untranslated=include
    assert (pages.get("default"), pages.get("wider")) == ("default", None)
    pages.put("wider", pages.mark(), "wider", page_span=wider)
    pages.apply([span(feed_key("en", IN_CHAIN), t, t)])  # listed by both
    assert (pages.get("default"), pages.get("wider")) == (None, None)
    assert meets(span("en", t, t), span("en~u", None, None)) and not meets(
        span("en", t, t), span("eo", None, None)
    )


def test_changes_travel_as_a_notify_payload_and_coarsen_never_narrower() -> None:
    t = [datetime(2026, 11, 1, 12, i, tzinfo=UTC) for i in range(40)]
    spans = [("en", t[1], t[1]), ("ja", None, None)]
    assert parse_page_changes(page_changes_payload(spans)) == spans
    assert parse_page_changes("") == [(None, None, None)] and parse_page_changes("{not json") == [
        (None, None, None)
    ]
    many = [("en", m, m) for m in t]
    assert coarsen(many) == [("en", t[0], t[-1])]  # one range covering them all
    assert coarsen([*many[:3], (None, None, None)]) == [(None, None, None)]
    every_locale = [(loc, m, m) for loc in LOCALES for m in t[:30]]
    payload = page_changes_payload(every_locale)
    assert len(payload) <= NOTIFY_MAX_CHARS
    assert all(any(meets(span(*c), span(*p)) for c in parse_page_changes(payload)) for p in every_locale)


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
        _wait(lambda: reader.sync_pages() is not None, "the kept pages in step")
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
        _wait(lambda: _reader(c).sync_pages() is not None, "the kept pages in step")
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
        _wait(lambda: _reader(c).sync_pages() is not None, "the kept pages in step")
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
        _wait(lambda: reader.sync_pages() is not None, "the kept pages in step")
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


def _rewrite(engine: sa.Engine, story_id: int, *, title: str | None = None, hidden: bool = False) -> None:
    """A writer's change of one story (a re-poll's new title, an editor hiding it), its entries
    rewritten in the same transaction."""
    with Session(engine) as s:
        if title is not None:
            s.execute(sa.update(Item).where(Item.story_id == story_id).values(title=title))  # type: ignore[arg-type]
        if hidden:
            s.execute(sa.update(Story).where(Story.id == story_id).values(hidden=True))  # type: ignore[arg-type]
        refresh_story_entries(s, [story_id])
        s.commit()


def test_a_change_drops_only_the_kept_pages_whose_range_it_meets(
    settings: Settings, engine: sa.Engine
) -> None:
    seed = Seeder(engine)
    ids = [seed.story(Member("en"), at=T0 + timedelta(minutes=i)) for i in range(12)]  # ids[-1] newest
    with make_client(settings, engine) as c:
        reader = _reader(c)
        _wait(lambda: reader.sync_pages() is not None, "the kept pages in step")
        first_q = FeedQuery("en", None, 4)

        def pages() -> tuple[Any, Any, FeedQuery]:
            first = reader.feed_rows(first_q)
            assert not isinstance(first, Problem)
            last = first.entries[-1]
            second_q = FeedQuery("en", FeedPosition(last.published_at.replace(tzinfo=UTC), last.story_id), 4)
            second = reader.feed_rows(second_q)
            assert not isinstance(second, Problem)
            return first, second, second_q

        def titles(page: Any) -> dict[int, str]:
            return {e.story_id: json.loads(e.json)["title"] for e in page.entries}

        def changed(mark: int) -> bool:
            now = reader.sync_pages()  # on PostgreSQL: once the notification has arrived
            return now is not None and now > mark

        first, second, second_q = pages()
        assert [e.story_id for e in first.entries] == ids[:7:-1]
        assert [e.story_id for e in second.entries] == ids[7:3:-1]
        # below both pages (older than the first entry past the second): both stay kept
        mark = reader.pages.mark()
        _rewrite(engine, ids[1], title="old news retitled")
        _wait(lambda: changed(mark), "the change seen")
        assert reader.kept_page(first_q) is first and reader.kept_page(second_q) is second
        # inside the second page: it is dropped (never answered stale), the first stays
        mark = reader.pages.mark()
        _rewrite(engine, ids[5], title="middle retitled")
        _wait(lambda: reader.kept_page(second_q) is None, "the second page dropped")
        assert reader.kept_page(first_q) is first
        rebuilt = reader.feed_rows(second_q)
        assert titles(rebuilt)[ids[5]] == "middle retitled"
        # the first entry past the first page decides its next cursor: a change there drops it too
        _rewrite(engine, ids[7], hidden=True)
        _wait(lambda: reader.kept_page(first_q) is None, "the first page dropped")
        first, second, second_q = pages()
        assert [e.story_id for e in first.entries] == ids[:7:-1]
        assert [e.story_id for e in second.entries] == [ids[6], ids[5], ids[4], ids[3]]
        # a new story on top: the first page goes, the second stays
        newest = seed.story(Member("en"), at=T0 + timedelta(hours=1))
        _wait(lambda: reader.kept_page(first_q) is None, "the first page dropped")
        assert reader.kept_page(second_q) is second
        assert [e["id"] for e in feed(c, locale="en", limit=4)["items"]] == [newest, ids[11], ids[10], ids[9]]


def test_sqlite_serves_a_change_with_the_next_request(settings: Settings, engine: sa.Engine) -> None:
    """On SQLite the changes are read per request: the request after a commit sees it, with no wait
    (on PostgreSQL the two-process test above polls: a NOTIFY arrives milliseconds later)."""
    if engine.dialect.name != "sqlite":
        return
    seed = Seeder(engine)
    ids = [seed.story(Member("en"), at=T0 + timedelta(minutes=i)) for i in range(8)]
    with make_client(settings, engine) as c:
        for i in (7, 2, 0):  # a first page's entry, a deeper one, the oldest
            for limit in (2, 4, 20):
                for _ in range(2):  # built, then kept
                    feed(c, locale="en", limit=limit)
            _rewrite(engine, ids[i], title=f"retitled {i}")
            for limit in (2, 4, 20):
                cursor = None
                while True:
                    params: dict[str, Any] = {"locale": "en", "limit": limit}
                    if cursor:
                        params["cursor"] = cursor
                    r = c.get("/v1/feed", params=params)
                    assert r.status_code == 200
                    for e in r.json()["items"]:
                        if e["id"] == ids[i]:
                            assert e["title"] == f"retitled {i}"
                    cursor = r.json()["next_cursor"]
                    if not cursor:
                        break


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
        before = _wait(reader.sync_pages, "the listener connected")
        reader.feed_rows(query)
        assert reader.kept_page(query) is not None
        server.stop_server("fast")
        _wait(lambda: reader.sync_pages() is None, "the listener noticing the restart")
        assert reader.kept_page(query) is None
        server.start_server()
        after = _wait(reader.sync_pages, "the listener reconnected")
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

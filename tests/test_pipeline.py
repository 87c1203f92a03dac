"""End to end: fixture feeds served over real loopback HTTP, polled into SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import time
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


def test_worker_processes_store_what_a_thread_would(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    """Every body goes to the process pool (no size floor); the items equal an in-thread parse."""
    from aggregator.normalize import prepare_feed
    from aggregator.poll import ParsePool

    specs = _good_routes(server)
    add_sources(engine, specs)
    pool = ParsePool(workers=2, min_process_bytes=0)
    try:
        deadline = time.monotonic() + 60
        while pool.executor_for(1) is None and time.monotonic() < deadline:  # threads until workers are up
            time.sleep(0.05)
        assert pool.executor_for(1) is not None
        report = asyncio.run(poll_round(engine, settings, executor=pool))
    finally:
        pool.shutdown()
    assert report.errors == 0 and report.inserted == 9
    stored = {(i.source_id, i.guid, i.link): i for i in _items(engine)}
    by_url = {s.url: s for s in _sources(engine).values()}
    expected = 0
    for spec in specs:
        source = by_url[spec.url]
        assert source.id is not None  # a stored row always has its id; narrows ``int | None``
        path = spec.url.split(str(server.url("")).rstrip("/"), 1)[1]
        route = server.routes[path]
        assert isinstance(route, Response)
        body = route.body
        _, entries = prepare_feed(
            body, url=spec.url, content_type=None, locale=spec.locale, fetched_at=datetime.now(UTC)
        )
        for entry in entries:
            item = stored.get((source.id, entry.guid, entry.link))
            if item is None:  # the duplicate guid of the ja feed
                continue
            expected += 1
            assert (item.title, item.text, item.summary_html, item.content_html) == (
                entry.title,
                entry.text,
                entry.summary_html,
                entry.content_html,
            )
            assert (item.tickers, item.links, item.language, item.image) == (
                list(entry.tickers),
                entry.links,
                entry.language,
                entry.image,
            )
            if entry.published_at < datetime.now(UTC) - timedelta(hours=1):  # dated entries
                assert item.content_hash == entry.content_hash
    assert expected == 9


def test_update_of_an_item_in_a_story_logs_a_feed_change(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    from aggregator.models import FeedChange
    from aggregator.store import items_without_story

    assert not items_without_story(engine)
    add_sources(engine, _good_routes(server))
    asyncio.run(poll_round(engine, settings))
    assert items_without_story(engine)
    run_dedupe(engine)
    assert not items_without_story(engine)
    with Session(engine) as session:
        before = len(session.exec(select(FeedChange)).all())
    body = (FIXTURES / "coindesk-en.xml").read_bytes().replace(b"as fees dropped", b"as fees fell")
    server.routes["/coindesk/en.xml"] = Response(body=body, headers={"Content-Type": "application/rss+xml"})
    report = asyncio.run(poll_round(engine, settings, all_sources=True))
    assert report.updated == 1 and report.inserted == 0
    changed = next(i for i in _items(engine) if "as fees fell" in i.title)
    assert changed.story_id is not None and changed.updated_at > changed.fetched_at
    with Session(engine) as session:
        changes = session.exec(select(FeedChange).order_by(FeedChange.id)).all()  # type: ignore[arg-type]
    assert len(changes) == before + 1 and changes[-1].story_id == changed.story_id
    # the re-poll rewrote the story's precomputed feed entries in the same transaction
    from aggregator.models import StoryEntry

    with Session(engine) as session:
        entry = session.get(StoryEntry, ("en", changed.story_id))
    assert entry is not None and "as fees fell" in entry.body and "as fees dropped" not in entry.body
    # Unchanged again: nothing more is written.
    again = asyncio.run(poll_round(engine, settings, all_sources=True))
    assert again.updated == 0 and again.inserted == 0


def test_second_poll_with_nothing_new_skips_dedupe_and_alembic(db_url: str, server: FeedServer) -> None:
    """``poll --once`` after a round of 304s loads neither the dedupe stage nor Alembic."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BABELWIRE_")}
    env.update(BABELWIRE_DATABASE_URL=db_url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1")
    run = [sys.executable, str(root / "main.py")]
    assert subprocess.run([*run, "migrate"], env=env, cwd=root, capture_output=True).returncode == 0
    from aggregator.db import make_engine

    engine = make_engine(Settings(database_url=db_url))
    add_sources(engine, _good_routes(server))
    engine.dispose()
    first = subprocess.run(
        [*run, "poll", "--once", "--quiet"], env=env, cwd=root, capture_output=True, text=True
    )
    assert first.returncode == 0 and "9 new items" in first.stdout and "dedupe: 9 items" in first.stdout
    probe = (
        "import sys, main; code = main.main(['poll', '--once', '--all', '--quiet']); "
        "print(sorted(m for m in ('aggregator.dedupe.run', 'alembic', 'mako') if m in sys.modules)); "
        "sys.exit(code)"
    )
    second = subprocess.run([sys.executable, "-c", probe], env=env, cwd=root, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "3 not modified" in second.stdout and "dedupe: nothing new" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == "[]"


def test_require_migrated_reads_the_head_without_alembic(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from aggregator.db import make_engine
    from aggregator.migrate import alembic_config, head_revision, require_migrated, upgrade
    from core.errors import StorageError

    assert head_revision() == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    engine = make_engine(Settings(database_url=f"sqlite:///{tmp_path}/fresh.sqlite"))
    with pytest.raises(StorageError, match="not migrated"):
        require_migrated(engine)
    upgrade(engine)
    require_migrated(engine)
    engine.dispose()


def test_hostile_characters_cost_nothing_and_are_stored_clean(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    # One lone surrogate escape used to fail the source's transaction: every entry was lost.
    body = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "hostile", "items": ['
        b'{"id": "h1", "url": "https://h.example/1", "title": "lone \\ud800 surrogate", "content_text": "a"},'
        b'{"id": "h2", "url": "https://h.example/2", "title": "bell\\u0007 back\\u0008 soh\\u0001 nul\\u0000",'
        b' "content_text": "b\\u0001"},'
        b'{"id": "h3", "url": "https://h.example/3", "title": "fine \\ud83d\\ude00", "content_text": "c"}]}'
    )
    server.routes["/hostile.json"] = Response(body=body, headers={"Content-Type": "application/feed+json"})
    add_sources(
        engine, [SourceSpec(url=server.url("/hostile.json"), outlet="coindesk", locale="en", title=None)]
    )
    report = asyncio.run(poll_round(engine, settings))
    assert report.errors == 0 and report.inserted == 3
    titles = sorted(i.title for i in _items(engine))
    assert titles == ["bell back soh nul", "fine \U0001f600", "lone \ufffd surrogate"]
    assert all("\x01" not in i.text for i in _items(engine))

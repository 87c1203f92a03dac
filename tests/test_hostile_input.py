"""Hostile input through the whole pipeline (loopback fetch → parse → normalize → decide → store →
dedupe), on SQLite and PostgreSQL: one malformed entry costs only itself.

An entry that cannot be read (a JSON Feed item that is not an object, an item with nothing in it, a
guid or link longer than an item can hold) is skipped and counted on its source
(``source.skipped_entries``, shown by ``sources list`` and the admin API); the feed's other entries
are stored. The property tests send RSS, Atom and JSON Feed documents mixing well-formed entries
(arbitrary Unicode — lone surrogates and controls where the format can carry them —, huge fields,
deeply nested markup and JSON) with malformed ones: no exception escapes a round, every
well-formed entry is stored (cleaned), exactly the malformed ones are counted, every item gets a
story.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.dedupe.run import run_dedupe
from aggregator.editorial.sources import health
from aggregator.parse import clean_text
from aggregator.poll import poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.conftest import ROOT
from tests.feedserver import FeedServer, Response

TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json",
}
LONG = "https://outlet.example/" + "x" * 2100
"""Longer than an item's guid or link column."""


@pytest.fixture(scope="module")
def parse_threads() -> Iterator[ThreadPoolExecutor]:
    """Rounds parse in a thread: the examples are small, a process pool would only add start-up."""
    with ThreadPoolExecutor(2) as pool:
        yield pool


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s


@dataclass(frozen=True)
class Good:
    """A well-formed entry: it must be stored."""

    guid: str
    title: str
    body: str


@dataclass(frozen=True)
class Bad:
    """A malformed entry (in the document's format): it must be skipped and counted."""

    kind: str


def _rss(entries: list[Good | Bad]) -> bytes:
    parts = []
    for e in entries:
        if isinstance(e, Bad):
            parts.append(
                {
                    "empty": "<item></item>",
                    "long_guid": f"<item><guid>{LONG}</guid><title>too long</title></item>",
                    "long_link": f"<item><link>{LONG}</link><title>too long too</title></item>",
                }[e.kind]
            )
        else:
            parts.append(
                f"<item><guid isPermaLink='false'>{e.guid}</guid><title>{escape(e.title)}</title>"
                f"<link>https://outlet.example/{e.guid}</link><description>{escape(e.body)}</description>"
                "<pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>hostile</title>'
        + "".join(parts)
        + "</channel></rss>"
    ).encode("utf-8")


def _atom(entries: list[Good | Bad]) -> bytes:
    parts = []
    for e in entries:
        if isinstance(e, Bad):
            parts.append(
                {
                    "empty": "<entry></entry>",
                    "long_guid": f"<entry><id>{LONG}</id><title>too long</title></entry>",
                    "long_link": f"<entry><link href={quoteattr(LONG)}/><title>too long too</title></entry>",
                }[e.kind]
            )
        else:
            parts.append(
                f"<entry><id>{e.guid}</id><title type='text'>{escape(e.title)}</title>"
                f"<link href='https://outlet.example/{e.guid}'/><updated>2026-12-01T10:00:00Z</updated>"
                f"<content type='html'>{escape(e.body)}</content></entry>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>hostile</title>'
        "<id>urn:hostile</id><updated>2026-12-01T10:00:00Z</updated>" + "".join(parts) + "</feed>"
    ).encode("utf-8")


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for n in range(depth):
        value = [value] if n % 2 else {"deeper": value}
    return value


JSON_BAD: dict[str, Any] = {
    "number": 5,
    "string": "an item",
    "null": None,
    "list": [{"id": "inside a list"}],
    "wrong_types": {"title": 5, "url": {"a": 1}, "content_html": 7, "content_text": [], "id": [1]},
    "long_guid": {"id": LONG, "title": "too long"},
    "long_link": {"url": LONG, "title": "too long too"},
}


def _json(entries: list[Good | Bad], depth: int = 0) -> bytes:
    items: list[Any] = []
    for e in entries:
        if isinstance(e, Bad):
            items.append(JSON_BAD[e.kind])
        else:
            items.append(
                {
                    "id": e.guid,
                    "url": f"https://outlet.example/{e.guid}",
                    "title": e.title,
                    "content_html": e.body,
                    "date_published": "2026-12-01T10:00:00Z",
                    # Wrong types in optional members cost nothing; extensions may nest deeply.
                    "tags": "not a list",
                    "attachments": 5,
                    "authors": {"name": "not a list"},
                    "_extension": _nested(depth),
                }
            )
    document = {"version": "https://jsonfeed.org/version/1.1", "title": "hostile", "items": items}
    # ensure_ascii: lone surrogates and controls travel as \uXXXX escapes, as a hostile feed sends them
    return json.dumps(document, ensure_ascii=True).encode()


RENDER = {"rss": _rss, "atom": _atom, "json": _json}


def _round(engine: sa.Engine, settings: Settings, pool: ThreadPoolExecutor) -> Any:
    return asyncio.run(poll_round(engine, settings, executor=pool))


def _source_row(engine: sa.Engine, url: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT id, skipped_entries, last_error FROM source WHERE url = :u"), {"u": url}
        ).one()


def _stored(engine: sa.Engine, source_id: int) -> dict[str, tuple[str, str, int | None]]:
    sql = "SELECT guid, title, text, story_id FROM item WHERE source_id = :s"
    with engine.connect() as conn:
        return {g: (t, x, sid) for g, t, x, sid in conn.execute(sa.text(sql), {"s": source_id})}


def _serve_one(
    engine: sa.Engine, site: FeedServer, fmt: str, body: bytes, pool: ThreadPoolExecutor, settings: Settings
) -> tuple[Any, str]:
    path = f"/{uuid.uuid4().hex}.{fmt}"
    site.routes[path] = Response(body=body, headers={"Content-Type": TYPES[fmt]})
    url = site.url(path)
    add_sources(engine, [SourceSpec(url=url, outlet="coindesk", locale="en", title=None)])
    return _round(engine, settings, pool), url


@pytest.mark.parametrize("fmt", sorted(RENDER))
def test_one_malformed_entry_is_skipped_and_counted_the_others_are_kept(
    engine: sa.Engine, settings: Settings, site: FeedServer, parse_threads: ThreadPoolExecutor, fmt: str
) -> None:
    good = [Good(f"good-{n}", f"Bitcoin miners report {n} new rigs", f"<p>Report {n}.</p>") for n in range(3)]
    kinds = sorted(JSON_BAD) if fmt == "json" else ["empty", "long_guid", "long_link"]
    entries: list[Good | Bad] = [good[0], *(Bad(k) for k in kinds), good[1], good[2]]
    report, url = _serve_one(engine, site, fmt, RENDER[fmt](entries), parse_threads, settings)
    assert report.errors == 0 and report.inserted == 3
    source_id, skipped, last_error = _source_row(engine, url)
    assert sorted(_stored(engine, source_id)) == ["good-0", "good-1", "good-2"]
    assert skipped == len(kinds) and last_error is None
    # Polled again, the unchanged document answers 304: nothing is parsed, nothing counted twice.
    assert asyncio.run(poll_round(engine, settings, executor=parse_threads, all_sources=True)).errors == 0
    assert _source_row(engine, url)[1] == len(kinds)
    # Shown where the sources' health is read: the admin API's source view (and the dashboard).
    from sqlmodel import Session

    with Session(engine) as session:
        [row] = [r for r in health(session) if r["url"] == url]
    assert row["skipped_entries"] == len(kinds)


# ---- property tests --------------------------------------------------------------------------------

_XML_CHAR = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n")
"""Any character an XML 1.0 document may carry."""
_ANY_CHAR = st.characters(codec=None, categories=None)
"""Any code point: JSON carries controls and lone surrogates as escapes."""


def _text(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    huge = st.builds(
        lambda c, n: c * n, chars.filter(lambda c: not c.isspace()), st.integers(20_000, 120_000)
    )
    nested = st.integers(100, 3000).map(lambda d: "<div>" * d + "deep" + "</div>" * d)
    return st.one_of(st.text(chars, max_size=60), st.text(chars, max_size=60), huge, nested)


def _entries(chars: st.SearchStrategy[str], bad_kinds: list[str]) -> st.SearchStrategy[list[Good | Bad]]:
    good = st.builds(lambda t, b: Good("", t, b), _text(chars), _text(chars))
    bad = st.sampled_from(bad_kinds).map(Bad)
    return st.lists(st.one_of(good, good, bad), min_size=1, max_size=6).map(
        lambda es: [
            Good(f"g{n}-{uuid.uuid4().hex[:8]}", e.title, e.body) if isinstance(e, Good) else e
            for n, e in enumerate(es)
        ]
    )


def _check_round(
    engine: sa.Engine,
    site: FeedServer,
    fmt: str,
    entries: list[Good | Bad],
    body: bytes,
    settings: Settings,
    pool: ThreadPoolExecutor,
) -> None:
    report, url = _serve_one(engine, site, fmt, body, pool, settings)
    assert report.polled == 1 and report.errors == 0, report.outcomes
    source_id, skipped, last_error = _source_row(engine, url)
    good = {e.guid for e in entries if isinstance(e, Good)}
    stored = _stored(engine, source_id)
    assert set(stored) == good
    assert skipped == len(entries) - len(good) and last_error is None
    for title, text, _ in stored.values():
        assert clean_text(title) == title and clean_text(text) == text and "\x00" not in text
    run_dedupe(engine)
    assert all(story is not None for *_, story in _stored(engine, source_id).values())


@hsettings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_any_xml_feed_stores_every_well_formed_entry(
    engine: sa.Engine,
    settings: Settings,
    site: FeedServer,
    parse_threads: ThreadPoolExecutor,
    fmt: str,
    data: st.DataObject,
) -> None:
    entries = data.draw(_entries(_XML_CHAR, ["empty", "long_guid", "long_link"]))
    _check_round(engine, site, fmt, entries, RENDER[fmt](entries), settings, parse_threads)


@hsettings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_any_json_feed_stores_every_well_formed_entry(
    engine: sa.Engine,
    settings: Settings,
    site: FeedServer,
    parse_threads: ThreadPoolExecutor,
    data: st.DataObject,
) -> None:
    entries = data.draw(_entries(_ANY_CHAR, sorted(JSON_BAD)))
    depth = data.draw(st.integers(0, 400))
    _check_round(engine, site, "json", entries, _json(entries, depth), settings, parse_threads)


def test_sources_list_shows_the_skipped_count(
    engine: sa.Engine, settings: Settings, site: FeedServer, parse_threads: ThreadPoolExecutor
) -> None:
    entries: list[Good | Bad] = [Good("g", "Ether staking opens", "<p>Open.</p>"), Bad("number"), Bad("null")]
    _, url = _serve_one(engine, site, "json", _json(entries), parse_threads, settings)
    env = dict(os.environ, BABELWIRE_DATABASE_URL=settings.database_url)
    listed = subprocess.run(
        [sys.executable, "main.py", "sources", "list"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if url in line]
    assert line.endswith("\tok skipped=2")

"""The offline demo outlets, served over real loopback HTTP and read back by real parsers."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import feedparser
import httpx
import pytest

from core.locales import LOCALES
from sources.catalogue import article_key, load_catalogue
from sources.demo import DemoFeedServer
from sources.demo.stories import load_demo_items
from sources.opml import parse_opml

NOW = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
_HREF = re.compile(r'<a href="([^"]+)" rel="original">')


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoFeedServer]:
    with DemoFeedServer(now=NOW) as server:
        yield server


@pytest.fixture(scope="module")
def fetched(demo: DemoFeedServer) -> dict[str, httpx.Response]:
    with httpx.Client(timeout=10) as client:
        return {source.url: client.get(source.url) for source in demo.sources()}


def _entries(response: httpx.Response) -> list[dict[str, str]]:
    """(link, content) of each entry, whatever the format."""
    if response.headers["content-type"].startswith("application/feed+json"):
        doc = json.loads(response.content)
        return [{"link": item["url"], "content": item["content_html"]} for item in doc["items"]]
    parsed = feedparser.parse(response.content)
    return [{"link": entry.link, "content": entry.content[0].value} for entry in parsed.entries]


def test_every_source_is_served_and_parses_with_entries(
    demo: DemoFeedServer, fetched: dict[str, httpx.Response]
) -> None:
    versions = set()
    for source in demo.sources():
        assert source.url.startswith(demo.base_url + "/")
        response = fetched[source.url]
        assert response.status_code == 200
        assert response.headers["etag"] and response.headers["last-modified"]
        if response.headers["content-type"].startswith("application/feed+json"):
            doc = json.loads(response.content)
            assert doc["version"] == "https://jsonfeed.org/version/1.1"
            assert doc["language"] == source.locale
            assert doc["items"] and all(item["id"] and item["date_published"] for item in doc["items"])
            versions.add("json11")
            continue
        parsed = feedparser.parse(response.content)
        assert not parsed.bozo, (source.url, parsed.get("bozo_exception"))
        assert parsed.entries
        assert all(entry.link and entry.published_parsed for entry in parsed.entries)
        assert parsed.feed.language.lower() == source.locale.lower()
        versions.add(parsed.version)
    assert versions == {"rss20", "atom10", "json11"}


def test_all_thirteen_locales_and_only_catalogue_outlets(demo: DemoFeedServer) -> None:
    sources = demo.sources()
    assert {source.locale for source in sources} == set(LOCALES)
    assert {source.outlet for source in sources} <= set(load_catalogue())
    assert len({(source.outlet, source.locale) for source in sources}) == len(sources)


def test_gate_translations_share_the_article_id_across_locales(
    demo: DemoFeedServer, fetched: dict[str, httpx.Response]
) -> None:
    locales_by_key: dict[str, set[str]] = defaultdict(set)
    for source in demo.sources():
        if source.outlet == "gate":
            for entry in _entries(fetched[source.url]):
                key = article_key("gate", entry["link"])
                assert key is not None, entry["link"]
                locales_by_key[key].add(source.locale)
    assert len(locales_by_key) >= 3
    assert max(len(locales) for locales in locales_by_key.values()) >= 5


def test_translations_carry_attribution_and_a_link_to_a_served_original(
    demo: DemoFeedServer, fetched: dict[str, httpx.Response]
) -> None:
    catalogue = load_catalogue()
    served_links = {entry["link"] for response in fetched.values() for entry in _entries(response)}
    translations = 0
    for source in demo.sources():
        for entry in _entries(fetched[source.url]):
            match = _HREF.search(entry["content"])
            if match is None:
                continue
            translations += 1
            assert match.group(1) in served_links
            assert match.group(1) != entry["link"]
            phrases = catalogue[source.outlet].attribution_phrases[source.locale]
            assert any(phrase in entry["content"] for phrase in phrases), (source.outlet, source.locale)
    assert translations >= 15


def test_each_event_has_a_translated_original_and_an_independent_story() -> None:
    items = load_demo_items(NOW)
    stories_by_event: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        stories_by_event[item.event][item.story].append(item.locale)
    assert len(stories_by_event) >= 5
    for event, stories in stories_by_event.items():
        sizes = sorted(len(locales) for locales in stories.values())
        assert sizes[-1] >= 4, event
        assert len(sizes) >= 2 and sizes[0] == 1, event


def test_publish_times_look_live_and_are_deterministic() -> None:
    items = load_demo_items(NOW)
    assert all(NOW - timedelta(days=7) < item.published <= NOW for item in items)
    assert max(item.published for item in items) > NOW - timedelta(hours=12)
    later = load_demo_items(NOW + timedelta(days=30))
    assert [item.url for item in later] == [item.url for item in items]
    assert all(b.published - a.published == timedelta(days=30) for a, b in zip(items, later, strict=True))


def test_some_entries_have_images(demo: DemoFeedServer, fetched: dict[str, httpx.Response]) -> None:
    images = [
        entry.media_content[0]["url"]
        for source in demo.sources()
        if fetched[source.url].headers["content-type"].startswith("application/rss+xml")
        for entry in feedparser.parse(fetched[source.url].content).entries
        if entry.get("media_content")
    ]
    assert len(images) >= 5
    assert all(url.startswith("https://") for url in images)


def test_validators_give_304(demo: DemoFeedServer, fetched: dict[str, httpx.Response]) -> None:
    with httpx.Client(timeout=10) as client:
        for url, first in fetched.items():
            again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
            assert again.status_code == 304, url
            assert again.content == b""
            assert again.headers["etag"] == first.headers["etag"]
        url, first = next(iter(fetched.items()))
        assert client.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200
        since = client.get(url, headers={"If-Modified-Since": first.headers["last-modified"]})
        assert since.status_code == 304
        old = format_datetime(NOW - timedelta(days=60), usegmt=True)
        assert client.get(url, headers={"If-Modified-Since": old}).status_code == 200
        assert client.get(demo.base_url + "/feeds/gate/xx.xml").status_code == 404


def test_sources_opml_lists_the_served_feeds(demo: DemoFeedServer) -> None:
    response = httpx.get(demo.base_url + "/sources.opml", timeout=10)
    assert response.status_code == 200
    assert parse_opml(response.content) == demo.sources()


def test_stop_closes_the_port() -> None:
    server = DemoFeedServer(now=NOW).start()
    url = server.sources()[0].url
    assert httpx.get(url, timeout=10).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.stop()

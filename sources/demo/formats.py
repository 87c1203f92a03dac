"""Renders demo items as RSS 2.0, Atom 1.0 or JSON Feed 1.1 bytes — the three formats real outlets
serve, so the pipeline's parser meets each of them in the demo."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from sources.demo.stories import DemoItem

FeedFormat = Literal["rss", "atom", "json"]
CONTENT_TYPES: dict[FeedFormat, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
EXTENSIONS: dict[FeedFormat, str] = {"rss": "xml", "atom": "atom", "json": "json"}

ATOM = "http://www.w3.org/2005/Atom"
CONTENT = "http://purl.org/rss/1.0/modules/content/"
DC = "http://purl.org/dc/elements/1.1/"
MEDIA = "http://search.yahoo.com/mrss/"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
for _prefix, _uri in (("atom", ATOM), ("content", CONTENT), ("dc", DC), ("media", MEDIA)):
    ET.register_namespace(_prefix, _uri)


@dataclass(frozen=True)
class Channel:
    """What a feed says about itself."""

    title: str
    homepage: str
    feed_url: str
    locale: str
    description: str
    publisher: str


def render(fmt: FeedFormat, channel: Channel, items: Sequence[DemoItem]) -> bytes:
    if fmt == "rss":
        return _rss(channel, items)
    if fmt == "atom":
        return _atom(channel, items)
    return _json_feed(channel, items)


def _image_type(url: str) -> str:
    return "image/png" if url.lower().endswith(".png") else "image/jpeg"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _xml(root: ET.Element) -> bytes:
    out = io.BytesIO()
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue()


def _rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _newest(items: Sequence[DemoItem]) -> datetime | None:
    return max((item.published for item in items), default=None)


def _rss(channel: Channel, items: Sequence[DemoItem]) -> bytes:
    rss = ET.Element("rss", version="2.0")
    ch = _sub(rss, "channel")
    _sub(ch, "title", channel.title)
    _sub(ch, "link", channel.homepage)
    _sub(ch, "description", channel.description)
    _sub(ch, "language", channel.locale.lower())
    newest = _newest(items)
    if newest:
        _sub(ch, "lastBuildDate", format_datetime(newest, usegmt=True))
    _sub(ch, "ttl", "15")
    _sub(ch, f"{{{ATOM}}}link", href=channel.feed_url, rel="self", type="application/rss+xml")
    for item in items:
        el = _sub(ch, "item")
        _sub(el, "title", item.title)
        _sub(el, "link", item.url)
        _sub(el, "guid", item.url, isPermaLink="true")
        _sub(el, "pubDate", format_datetime(item.published, usegmt=True))
        if item.author:
            _sub(el, f"{{{DC}}}creator", item.author)
        for ticker in item.tickers:
            _sub(el, "category", ticker)
        _sub(el, "description", item.summary)
        _sub(el, f"{{{CONTENT}}}encoded", item.content_html)
        if item.image:
            _sub(el, f"{{{MEDIA}}}content", url=item.image, medium="image", type=_image_type(item.image))
    return _xml(rss)


def _atom(channel: Channel, items: Sequence[DemoItem]) -> bytes:
    feed = ET.Element(f"{{{ATOM}}}feed", {XML_LANG: channel.locale})
    _sub(feed, f"{{{ATOM}}}id", channel.feed_url)
    _sub(feed, f"{{{ATOM}}}title", channel.title)
    _sub(feed, f"{{{ATOM}}}subtitle", channel.description)
    newest = _newest(items)
    if newest:
        _sub(feed, f"{{{ATOM}}}updated", _rfc3339(newest))
    _sub(feed, f"{{{ATOM}}}link", rel="self", href=channel.feed_url, type="application/atom+xml")
    _sub(feed, f"{{{ATOM}}}link", rel="alternate", href=channel.homepage, type="text/html")
    author = _sub(feed, f"{{{ATOM}}}author")
    _sub(author, f"{{{ATOM}}}name", channel.publisher)
    for item in items:
        entry = _sub(feed, f"{{{ATOM}}}entry")
        _sub(entry, f"{{{ATOM}}}id", item.url)
        _sub(entry, f"{{{ATOM}}}title", item.title)
        _sub(entry, f"{{{ATOM}}}link", rel="alternate", href=item.url, type="text/html")
        _sub(entry, f"{{{ATOM}}}published", _rfc3339(item.published))
        _sub(entry, f"{{{ATOM}}}updated", _rfc3339(item.published))
        if item.author:
            entry_author = _sub(entry, f"{{{ATOM}}}author")
            _sub(entry_author, f"{{{ATOM}}}name", item.author)
        for ticker in item.tickers:
            _sub(entry, f"{{{ATOM}}}category", term=ticker)
        _sub(entry, f"{{{ATOM}}}summary", item.summary, type="text")
        _sub(entry, f"{{{ATOM}}}content", item.content_html, type="html")
        if item.image:
            _sub(entry, f"{{{ATOM}}}link", rel="enclosure", href=item.image, type=_image_type(item.image))
    return _xml(feed)


def _json_feed(channel: Channel, items: Sequence[DemoItem]) -> bytes:
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": channel.title,
        "home_page_url": channel.homepage,
        "feed_url": channel.feed_url,
        "description": channel.description,
        "language": channel.locale,
        "authors": [{"name": channel.publisher}],
        "items": [_json_item(item) for item in items],
    }
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


def _json_item(item: DemoItem) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": item.url,
        "url": item.url,
        "title": item.title,
        "summary": item.summary,
        "content_html": item.content_html,
        "date_published": _rfc3339(item.published),
        "language": item.locale,
    }
    if item.image:
        entry["image"] = item.image
    if item.author:
        entry["authors"] = [{"name": item.author}]
    if item.tickers:
        entry["tags"] = list(item.tickers)
    return entry

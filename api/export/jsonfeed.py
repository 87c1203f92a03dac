"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/) from a ``FeedDocument``.

The ``_babelwire`` extension object of each item carries what JSON Feed has no field for: the
original article, the story's translations and related stories, the served locale and the
disclaimer (also appended to ``content_html``)."""

from __future__ import annotations

from typing import Any

import pydantic_core

from aggregator.parse import clean_text
from api.export.atom import rfc3339
from api.export.document import ExportEntry, FeedDocument

MEDIA_TYPE = "application/feed+json; charset=utf-8"
VERSION = "https://jsonfeed.org/version/1.1"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _item(e: ExportEntry) -> dict[str, Any]:
    c = clean_text
    item: dict[str, Any] = {"id": e.id}
    if e.url:
        item["url"] = c(e.url)
    if e.original.get("url") and e.original["url"] != e.url:
        item["external_url"] = c(e.original["url"])
    item |= {
        "title": c(e.title),
        "content_html": e.content_html,
        "summary": c(e.summary_text),
        "date_published": rfc3339(e.published),
        "authors": [{"name": c(e.outlet)}],
        "tags": list(e.tickers),
        "language": e.locale,
    }
    if e.image:
        item["image"] = c(e.image)
    item["_babelwire"] = {
        "story_id": e.story_id,
        "locale_served": e.locale,
        "original": _clean(e.original),
        "translations": [{"locale": t.locale, "url": c(t.href)} for t in e.translations],
        "related": [{"title": c(r.title or ""), "url": c(r.href), "locale": r.locale} for r in e.related],
        "disclaimer": _clean(e.disclaimer),
    }
    return item


TAIL = b"]}"


def render(doc: FeedDocument) -> bytes:
    return b"".join((render_head(doc), b",".join(render_entry(e) for e in doc.entries), TAIL))


def render_head(doc: FeedDocument) -> bytes:
    """The feed object up to the opening of ``items`` (its last member)."""
    feed: dict[str, Any] = {
        "version": VERSION,
        "title": doc.title,
        "home_page_url": doc.home_url,
        "feed_url": doc.self_urls["json"],
        "description": doc.description,
    }
    if "json" in doc.next_urls:
        feed["next_url"] = doc.next_urls["json"]
    feed |= {"language": doc.locale, "authors": [{"name": "babelwire"}]}
    if doc.hub:
        feed["hubs"] = [{"type": "WebSub", "url": doc.hub}]
    return pydantic_core.to_json(feed)[:-1] + b',"items":['


def render_entry(e: ExportEntry) -> bytes:
    """One item: it depends on the entry alone, so it can be kept and reused."""
    return pydantic_core.to_json(_item(e))

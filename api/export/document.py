"""One page of the localized feed as a format-neutral document: what RSS, Atom and JSON Feed all say.

Built from a ``/v1/feed`` page body (``FeedReader.feed_page``) plus two facts the page does not
carry: its stories' ``updated_at`` (the feed's ``updated`` and ``Last-Modified``: the page changes
when a story gains a member) and, when an entry was served through a fallback, the disclaimer of
the *requested* locale.

An entry's own ``updated`` is its story's first publication: a new translation or related link
does not make readers show the entry again (and stories created by one dedupe run would all share
their ``updated_at`` second, which validators flag).

Identity: an entry's id is ``tag:babelwire,2026:{requested locale}/story/{story id}`` — it names
the story in one locale's feed, not the member served, so it survives re-renders, a new
translation becoming the served member, and filters. A feed's id is its locale and filters.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aggregator.parse import clean_text
from aggregator.websub import feed_url
from api.export.texts import DESCRIPTION, ORIGINAL, TITLE

Json = dict[str, Any]

TAG = "tag:babelwire,2026:"
EMPTY_FEED_UPDATED = datetime(2026, 1, 1, tzinfo=UTC)
"""``updated`` of a feed with no entries: a constant, so an empty feed keeps its ETag."""


def entry_id(locale: str, story_id: int) -> str:
    return f"{TAG}{locale}/story/{story_id}"


@dataclass(frozen=True)
class Link:
    href: str
    locale: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ExportEntry:
    id: str
    story_id: int
    title: str
    url: str | None
    summary_text: str
    content_html: str
    """Sanitized summary, the link to the original with its outlet's name, then the disclaimer."""
    published: datetime
    updated: datetime
    locale: str
    """Locale the title and text are in (``locale_served``)."""
    outlet: str
    """Name of the outlet of the served member (the entry's author)."""
    original: Json
    """``{"outlet": {"id", "name"}, "url", "locale"}`` as ``/v1/feed`` gives it."""
    image: str | None
    tickers: tuple[str, ...]
    translations: tuple[Link, ...]
    related: tuple[Link, ...]
    disclaimer: Json | None


@dataclass(frozen=True)
class FeedDocument:
    locale: str
    id: str
    title: str
    description: str
    home_url: str
    self_urls: Mapping[str, str]
    """Format → URL of this same page in that format (the served format's is the self link)."""
    next_urls: Mapping[str, str]
    """Format → URL of the next page (RFC 5005); empty on the last page."""
    hub: str | None
    updated: datetime
    entries: tuple[ExportEntry, ...]


def parse_time(value: str) -> datetime:
    """``2026-11-25T09:30:00Z`` (as ``api.feed.iso_utc`` writes it) → aware UTC."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def esc(value: str) -> str:
    """Text made safe for XML/HTML content and attributes: cleaned, then escaped."""
    return html.escape(clean_text(value), quote=True)


def content_html(entry: Json, requested: str, disclaimer: Json | None) -> str:
    original = entry["original"]
    outlet = esc(original["outlet"]["name"])
    credit = f'<a href="{esc(original["url"])}">{outlet}</a>' if original.get("url") else outlet
    parts = [clean_text(entry["summary"]), f"<p>{esc(ORIGINAL[requested])}: {credit}</p>"]
    if disclaimer and disclaimer.get("text"):
        parts.append(f"<hr><p><small>{esc(disclaimer['text'])}</small></p>")
    return "\n".join(p for p in parts if p)


def build_entry(entry: Json, requested: str, disclaimer: Json | None) -> ExportEntry:
    published = parse_time(entry["published_at"])
    return ExportEntry(
        id=entry_id(requested, entry["id"]),
        story_id=entry["id"],
        title=entry["title"],
        url=entry["url"] or entry["original"]["url"],
        summary_text=entry["summary_text"],
        content_html=content_html(entry, requested, disclaimer),
        published=published,
        updated=published,
        locale=entry["locale_served"],
        outlet=entry["outlet"]["name"],
        original=entry["original"],
        image=entry["image"],
        tickers=tuple(entry["tickers"]),
        translations=tuple(Link(t["url"], t["locale"]) for t in entry["translations"] if t["url"]),
        related=tuple(Link(r["url"], r["locale"], r["title"]) for r in entry["related"] if r["url"]),
        disclaimer=disclaimer,
    )


def build_document(
    page: Json,
    *,
    base: str,
    locale: str,
    filters: Mapping[str, str | None],
    formats: Sequence[str],
    hub: str | None,
    updated_at: Mapping[int, datetime],
    updated: datetime | None = None,
) -> FeedDocument:
    """``page`` (a ``FeedPage`` body) for one request: ``filters`` are the query parameters that
    shape the page (tickers, outlet, limit, cursor), kept in the self and next links. ``updated``,
    when given, is the feed's ``updated`` (for a head whose entries are rendered apart)."""
    entries = tuple(build_entry(e, locale, e["disclaimer"]) for e in page["items"])
    changed = [updated_at[e.story_id] for e in entries if e.story_id in updated_at]
    if updated is not None:
        changed.append(updated)
    next_cursor = page["next_cursor"]
    shape = {k: filters.get(k) for k in ("tickers", "outlet", "untranslated", "limit")}
    feed_key = "&".join(
        f"{k}={quote(v, safe=',')}" for k in ("tickers", "outlet", "untranslated") if (v := filters.get(k))
    )
    return FeedDocument(
        locale=locale,
        id=f"{TAG}{locale}/feed" + (f"?{feed_key}" if feed_key else ""),
        title=TITLE[locale],
        description=DESCRIPTION[locale],
        home_url=f"{base}/v1/feed?locale={locale}",
        self_urls={f: feed_url(base, f, locale, **shape, cursor=filters.get("cursor")) for f in formats},
        next_urls=(
            {f: feed_url(base, f, locale, **shape, cursor=next_cursor) for f in formats}
            if next_cursor
            else {}
        ),
        hub=hub,
        updated=max([e.updated for e in entries] + changed, default=EMPTY_FEED_UPDATED),
        entries=entries,
    )

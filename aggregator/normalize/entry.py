"""The normalize stage's entry: a :class:`~aggregator.parse.RawEntry` → a :class:`NormalizedEntry`.

Fixed order, pure (no I/O, no clock: "now" is the fetch time):

1. URLs: the link, image, alternates and source become absolute (against the feed URL), with
   tracking parameters, fragments and default ports removed (:func:`canonical_url`).
2. Dates: aware UTC; a missing date becomes the fetch time, a date more than a day past the
   fetch time is clamped to it (feeds that pre-date articles would otherwise pin them on top).
3. Title: plain text, entities decoded (twice when the feed double-escaped them).
4. Body: sanitized with nh3 **last**, in one pass that also makes its URLs absolute and strips
   their tracking parameters. Everything read from the body afterwards (text, outbound links,
   the "original" attribution link) is read from the sanitized HTML, which is never changed.
5. Text (title + body, paragraphs as lines) feeds language detection, tickers and the
   content hash that ``decide`` compares.

Language: the source's declared locale is kept unless the text clearly says otherwise — see
:func:`detect_language`. The "original" link follows the attribution conventions described at
:func:`~aggregator.normalize.attribution.original_link`.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aggregator.normalize.attribution import original_link, outbound_links
from aggregator.normalize.language import detect_language
from aggregator.normalize.markup import html_to_text, sanitize_html, title_text
from aggregator.normalize.tickers import extract_tickers
from aggregator.normalize.urls import canonical_url
from aggregator.parse import ParsedFeed, RawEntry, parse_feed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NormalizedEntry:
    """An entry ready for ``decide`` and ``store``: clean URLs, UTC dates, safe HTML."""

    guid: str | None
    link: str | None
    """Absolute, tracking parameters removed."""
    title: str
    summary_html: str
    """Sanitized with nh3; URLs absolute. When the feed gave content but no summary, the first
    sentences of the content (:func:`lead_sentences`) as one paragraph."""
    content_html: str
    """Sanitized with nh3; URLs absolute."""
    summary_text: str
    """Plain text of ``summary_html`` on one line (the API's ``summary_text``)."""
    text: str
    """Plain text of title and body, one paragraph per line, for dedupe."""
    published_at: datetime
    image: str | None
    author: str | None
    language: str | None
    tickers: tuple[str, ...]
    links: dict[str, Any]
    """{"alternates": [{"href", "hreflang"}], "source", "original", "outbound": [≤ 20 urls]}."""
    content_hash: str


FUTURE_TOLERANCE = timedelta(days=1)
_LITERAL_NEWLINE = re.compile(r"\\n(?![a-z])")


def normalize_entry(raw: RawEntry, *, feed_url: str, locale: str, fetched_at: datetime) -> NormalizedEntry:
    """Normalize one parsed entry of the source at ``feed_url`` (declared ``locale``)."""
    fetched_at = _as_utc(fetched_at)
    base = canonical_url(feed_url)
    link = canonical_url(raw.link, base) if raw.link else None
    if link is None and raw.guid and raw.guid.startswith(("http://", "https://")):
        link = canonical_url(raw.guid, base)

    summary_html = sanitize_html(raw.summary_html, base)
    content_html = sanitize_html(raw.content_html, base)
    body_html = content_html or summary_html
    plain = html_to_text(body_html)
    body_text = _LITERAL_NEWLINE.sub("\n", plain) if "\\" in plain else plain
    if not body_text and content_html:
        body_html, body_text = summary_html, html_to_text(summary_html)
        plain = body_text
    if not summary_html and content_html and body_text:
        summary_html = f"<p>{html.escape(lead_sentences(body_text), quote=False)}</p>"
    title = title_text(raw.title)
    if title:
        text = f"{title}\n{body_text}" if body_text else title
    else:
        title, text = _fallback_title(body_text), body_text

    published = raw.published or raw.updated
    published_at = _as_utc(published) if published else fetched_at
    if published_at > fetched_at + FUTURE_TOLERANCE:
        published_at = fetched_at

    image = canonical_url(raw.image, base) if raw.image else None
    if image is not None and len(image) > URL_MAX:
        image = None
    alternates = []
    for href, hreflang in raw.alternates:
        absolute = canonical_url(href, base)
        if absolute and absolute != link:
            alternates.append({"href": absolute, "hreflang": hreflang})
    links: dict[str, Any] = {
        "alternates": alternates,
        "source": canonical_url(raw.source_url, base) if raw.source_url else None,
        "original": original_link(body_html, link, plain),
        "outbound": outbound_links((content_html, summary_html), link),
    }
    author = " ".join(raw.author.split()) if raw.author else None
    return NormalizedEntry(
        guid=raw.guid.strip() if raw.guid and raw.guid.strip() else None,
        link=link,
        title=title,
        summary_html=summary_html,
        content_html=content_html,
        summary_text=html_to_text(summary_html, one_line=True),
        text=text,
        published_at=published_at,
        image=image,
        author=author or None,
        language=detect_language(text, locale),
        tickers=extract_tickers(text),
        links=links,
        content_hash=hashlib.sha256(f"{title}\n{text}".encode()).hexdigest(),
    )


def prepare_feed(
    body: bytes, *, url: str, content_type: str | None, locale: str, fetched_at: datetime
) -> tuple[ParsedFeed, list[NormalizedEntry]]:
    """Parse a fetched body and normalize its entries: the CPU-bound half of a source update.

    A module-level function of plain arguments, so a worker process can run it (the poller
    sends big bodies to a process pool). The parsed feed comes back without its raw entries,
    which the normalized ones replace: half the bytes to send back.
    """
    parsed = parse_feed(body, url=url, content_type=content_type)
    # Relative entry links resolve against the site, as readers do (Miniflux does the same).
    site = parsed.link if parsed.link and parsed.link.startswith(("http://", "https://")) else url
    entries: list[NormalizedEntry] = []
    skipped = parsed.skipped
    for raw in parsed.entries:
        try:
            entry = normalize_entry(raw, feed_url=site, locale=locale, fetched_at=fetched_at)
        except Exception as exc:  # one entry costs only itself; the source row counts it
            log.warning("skipped an entry of %s: %s", url, f"{type(exc).__name__}: {exc}"[:200])
            skipped += 1
            continue
        if not storable(entry):
            skipped += 1
            continue
        entries.append(entry)
    return replace(parsed, entries=(), skipped=skipped), entries


URL_MAX = 2000
"""The longest guid, link or image URL an item keeps (its columns' size)."""


def storable(entry: NormalizedEntry) -> bool:
    """Whether an item can hold the entry's identity: a guid or link longer than its column is not
    a real one (an image that long is simply dropped by :func:`normalize_entry`)."""
    return len(entry.guid or "") <= URL_MAX and len(entry.link or "") <= URL_MAX


LEAD_CHARS = 280
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")


def lead_sentences(body_text: str, limit: int = LEAD_CHARS) -> str:
    """The first sentences of a body, whole sentences up to about ``limit`` characters (at least one,
    cut at a word with "…" when the first alone is longer): the summary of an entry that has none."""
    flat = " ".join(body_text.split())
    out = ""
    for sentence in _SENTENCE_END.split(flat):
        if not sentence:
            continue
        candidate = f"{out} {sentence}" if out and not out.endswith(("。", "！", "？")) else out + sentence
        if out and len(candidate) > limit:
            break
        out = candidate
        if len(out) >= limit:
            break
    if len(out) > limit:
        cut = out[:limit]
        out = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + "…"
    return out


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _fallback_title(body_text: str, limit: int = 120) -> str:
    """Title-less entries (micro-posts) get their first line, cut at a word, as title."""
    first = body_text.split("\n", 1)[0]
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0] if " " in first[:limit] else first[:limit]
    return cut.rstrip() + "…"

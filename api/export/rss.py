"""RSS 2.0 (with the Atom, Dublin Core and Media RSS namespaces), written by hand from a ``FeedDocument``."""

from __future__ import annotations

from email.utils import format_datetime

from api.export.document import ExportEntry, FeedDocument, esc

MEDIA_TYPE = "application/rss+xml; charset=utf-8"


def rfc822(moment: object) -> str:
    """``Wed, 25 Nov 2026 09:30:00 GMT``."""
    return format_datetime(moment, usegmt=True)  # type: ignore[arg-type]


TAIL = b"</channel>\n</rss>\n"


def render(doc: FeedDocument) -> bytes:
    return b"".join((render_head(doc), *(render_entry(e) for e in doc.entries), TAIL))


def render_head(doc: FeedDocument) -> bytes:
    """Everything before the first item."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:media="http://search.yahoo.com/mrss/">\n'
        "<channel>\n",
        f"<title>{esc(doc.title)}</title>\n",
        f"<link>{esc(doc.home_url)}</link>\n",
        f"<description>{esc(doc.description)}</description>\n",
        f"<language>{esc(doc.locale)}</language>\n",
        f"<lastBuildDate>{rfc822(doc.updated)}</lastBuildDate>\n",
        "<generator>babelwire</generator>\n",
        f'<atom:link rel="self" type="application/rss+xml" href="{esc(doc.self_urls["rss"])}"/>\n',
    ]
    if "rss" in doc.next_urls:
        out.append(f'<atom:link rel="next" type="application/rss+xml" href="{esc(doc.next_urls["rss"])}"/>\n')
    if doc.hub:
        out.append(f'<atom:link rel="hub" href="{esc(doc.hub)}"/>\n')
    return "".join(out).encode()


def render_entry(e: ExportEntry) -> bytes:
    """One ``<item>``: it depends on the entry alone, so it can be kept and reused."""
    out = [f"<item>\n<title>{esc(e.title)}</title>\n"]
    if e.url:
        out.append(f"<link>{esc(e.url)}</link>\n")
    out.append(f"<description>{esc(e.content_html)}</description>\n")
    out.append(f"<dc:creator>{esc(e.outlet)}</dc:creator>\n")
    out.extend(f"<category>{esc(t)}</category>\n" for t in e.tickers)
    out.append(f'<guid isPermaLink="false">{esc(e.id)}</guid>\n')
    out.append(f"<pubDate>{rfc822(e.published)}</pubDate>\n")
    if e.image:
        out.append(f'<media:content url="{esc(e.image)}" medium="image"/>\n')
    if e.original.get("url"):
        out.append(f'<source url="{esc(e.original["url"])}">{esc(e.original["outlet"]["name"])}</source>\n')
    out.append("</item>\n")
    return "".join(out).encode()

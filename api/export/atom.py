"""Atom 1.0 (RFC 4287), written by hand from a ``FeedDocument``; paging links per RFC 5005."""

from __future__ import annotations

from datetime import datetime

from api.export.document import ExportEntry, FeedDocument, Link, esc

MEDIA_TYPE = "application/atom+xml; charset=utf-8"
_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}


def rfc3339(moment: datetime) -> str:
    """``2026-11-25T09:30:00Z`` (whole seconds, UTC)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _hreflang(link: Link) -> str:
    return f' hreflang="{esc(link.locale)}"' if link.locale else ""


TAIL = b"</feed>\n"


def render(doc: FeedDocument) -> bytes:
    return b"".join((render_head(doc), *(render_entry(e) for e in doc.entries), TAIL))


def render_head(doc: FeedDocument) -> bytes:
    """Everything before the first entry."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        f'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/" '
        f'xml:lang="{esc(doc.locale)}">\n',
        f"<id>{esc(doc.id)}</id>\n",
        f"<title>{esc(doc.title)}</title>\n",
        f"<subtitle>{esc(doc.description)}</subtitle>\n",
        f"<updated>{rfc3339(doc.updated)}</updated>\n",
        "<author><name>babelwire</name></author>\n",
        "<generator>babelwire</generator>\n",
        f'<link rel="self" type="application/atom+xml" href="{esc(doc.self_urls["atom"])}"/>\n',
    ]
    out.extend(
        f'<link rel="alternate" type="{_TYPES[fmt]}" href="{esc(url)}"/>\n'
        for fmt, url in doc.self_urls.items()
        if fmt != "atom"
    )
    if "atom" in doc.next_urls:
        out.append(f'<link rel="next" type="application/atom+xml" href="{esc(doc.next_urls["atom"])}"/>\n')
    if doc.hub:
        out.append(f'<link rel="hub" href="{esc(doc.hub)}"/>\n')
    return "".join(out).encode()


def render_entry(e: ExportEntry) -> bytes:
    """One ``<entry>``: it depends on the entry alone, so it can be kept and reused."""
    out = [f'<entry xml:lang="{esc(e.locale)}">\n<id>{esc(e.id)}</id>\n']
    out.append(f'<title type="text">{esc(e.title)}</title>\n')
    out.append(f"<updated>{rfc3339(e.updated)}</updated>\n<published>{rfc3339(e.published)}</published>\n")
    out.append(f"<author><name>{esc(e.outlet)}</name></author>\n")
    if e.url:
        out.append(
            f'<link rel="alternate" type="text/html" hreflang="{esc(e.locale)}" href="{esc(e.url)}"/>\n'
        )
    out.extend(
        f'<link rel="alternate" type="text/html"{_hreflang(t)} href="{esc(t.href)}"/>\n'
        for t in e.translations
        if t.locale != e.locale
    )
    out.extend(
        f'<link rel="related" type="text/html"{_hreflang(r)} title="{esc(r.title or "")}" href="{esc(r.href)}"/>\n'
        for r in e.related
    )
    out.extend(f'<category term="{esc(t)}"/>\n' for t in e.tickers)
    if e.image:
        out.append(f'<media:content url="{esc(e.image)}" medium="image"/>\n')
    out.append(f'<content type="html">{esc(e.content_html)}</content>\n</entry>\n')
    return "".join(out).encode()

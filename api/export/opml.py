"""``/v1/feeds.opml``: OPML 2.0 listing babelwire's own feeds, a folder per locale, one outline per
format, for a reader to subscribe in one step. (``main.py sources export`` is the other OPML: the
sources babelwire polls.)"""

from __future__ import annotations

from aggregator import LOCALES
from aggregator.websub import FORMATS, feed_url
from api.export.document import esc
from api.export.texts import LANGUAGE_NAME, TITLE

MEDIA_TYPE = "text/x-opml; charset=utf-8"
_FORMAT_NAME = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
_VERSION = {"rss": ' version="RSS2"', "atom": ' version="ATOM"', "json": ""}


def render(base: str) -> bytes:
    out = [
        '<?xml version="1.0" encoding="utf-8"?>\n<opml version="2.0">\n<head>\n',
        "<title>babelwire feeds</title>\n<docs>http://opml.org/spec2.opml</docs>\n</head>\n<body>\n",
    ]
    for locale in LOCALES:
        name = esc(f"{LANGUAGE_NAME[locale]} ({locale})")
        out.append(f'<outline text="{name}" title="{name}">\n')
        home = esc(f"{base}/v1/feed?locale={locale}")
        for fmt in FORMATS:
            title = esc(f"{TITLE[locale]} ({_FORMAT_NAME[fmt]})")
            out.append(
                f'<outline type="rss" text="{title}" title="{title}"{_VERSION[fmt]} language="{locale}" '
                f'xmlUrl="{esc(feed_url(base, fmt, locale))}" htmlUrl="{home}"/>\n'
            )
        out.append("</outline>\n")
    out.append("</body>\n</opml>\n")
    return "".join(out).encode()

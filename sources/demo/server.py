"""The bundled offline demo: outlets' feeds served over real loopback HTTP.

``DemoFeedServer`` renders one feed per (outlet, locale) found in ``stories.json`` — mostly RSS 2.0,
some Atom 1.0 and JSON Feed 1.1 — and serves them from a threaded ``http.server`` on 127.0.0.1
(the project's one loopback server, ``sources.feedserver``) with ``ETag``/``Last-Modified`` validators, so the real pipeline (``allow_private_feeds``) polls it
exactly as it polls the world: conditional GETs, 304s and all. ``/sources.opml`` lists the feeds.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from sources.catalogue import load_catalogue
from sources.demo.formats import CONTENT_TYPES, EXTENSIONS, Channel, FeedFormat, render
from sources.demo.stories import DemoItem, load_demo_items
from sources.feedserver import FeedServer, Response
from sources.opml import SourceSpec, export_opml

FORMATS: dict[tuple[str, str], FeedFormat] = {
    ("coindesk", "en"): "atom",
    ("forklog", "ru"): "atom",
    ("cointelegraph", "ja"): "atom",
    ("panews", "zh-CN"): "json",
    ("beincrypto", "vi"): "json",
}
"""Feeds not served as RSS 2.0."""


@dataclass(frozen=True)
class DemoFeed:
    """One rendered feed and its validators."""

    outlet: str
    locale: str
    format: FeedFormat
    path: str
    title: str
    body: bytes
    etag: str
    last_modified: datetime


class DemoFeedServer:
    """Serves the demo outlets on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, now: datetime | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._items = load_demo_items(now)
        self._address = (host, port)
        self._server: FeedServer | None = None
        self._feeds: dict[str, DemoFeed] = {}

    @property
    def items(self) -> list[DemoItem]:
        return list(self._items)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("DemoFeedServer is not started")
        return self._server.base_url

    @property
    def feeds(self) -> list[DemoFeed]:
        return list(self._feeds.values())

    def sources(self) -> list[SourceSpec]:
        """One source per served feed, pointing at this server."""
        return [
            SourceSpec(
                url=self.base_url + feed.path, outlet=feed.outlet, locale=feed.locale, title=feed.title
            )
            for feed in self._feeds.values()
        ]

    def start(self) -> Self:
        if self._server is not None:
            return self
        # HTTP/1.0: one request per connection, so nothing is still answered after stop().
        self._server = FeedServer(*self._address, keep_alive=False)
        self._feeds = self._render()
        routes = self._server.routes
        for feed in self._feeds.values():
            routes[feed.path] = Response(
                body=feed.body,
                headers={"Content-Type": CONTENT_TYPES[feed.format], "Cache-Control": "max-age=60"},
                etag=feed.etag,
                last_modified=feed.last_modified,
            )
        opml = export_opml(self.sources(), "babelwire demo")
        routes["/sources.opml"] = Response(
            body=opml, headers={"Content-Type": "text/x-opml; charset=utf-8"}, etag=False
        )
        routes["/"] = Response(
            body=self.index_json(), headers={"Content-Type": "application/json"}, etag=False
        )
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    __enter__ = start

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _render(self) -> dict[str, DemoFeed]:
        catalogue = load_catalogue()
        grouped: dict[tuple[str, str], list[DemoItem]] = defaultdict(list)
        for item in self._items:
            grouped[(item.outlet, item.locale)].append(item)
        feeds: dict[str, DemoFeed] = {}
        for (outlet, locale), items in sorted(grouped.items()):
            spec = catalogue[outlet]
            fmt = FORMATS.get((outlet, locale), "rss")
            path = f"/feeds/{outlet}/{locale}.{EXTENSIONS[fmt]}"
            title = f"{spec.name} ({locale}, demo)"
            channel = Channel(
                title=title,
                homepage=spec.homepage,
                feed_url=self.base_url + path,
                locale=locale,
                description=f"{spec.name}: offline demo feed in {locale}",
                publisher=spec.name,
            )
            body = render(fmt, channel, items)
            feeds[path] = DemoFeed(
                outlet=outlet,
                locale=locale,
                format=fmt,
                path=path,
                title=title,
                body=body,
                etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
                last_modified=max(item.published for item in items),
            )
        return feeds

    def feed_at(self, path: str) -> DemoFeed | None:
        return self._feeds.get(path)

    def index_json(self) -> bytes:
        """The served feeds as JSON, for a person poking at the demo."""
        listing = [
            {"outlet": f.outlet, "locale": f.locale, "format": f.format, "url": self.base_url + f.path}
            for f in self._feeds.values()
        ]
        return json.dumps({"feeds": listing}, ensure_ascii=False, indent=1).encode("utf-8")

"""The bundled offline demo: outlets' feeds served over real loopback HTTP.

``DemoFeedServer`` renders one feed per (outlet, locale) found in ``stories.json`` — mostly RSS 2.0,
some Atom 1.0 and JSON Feed 1.1 — and serves them from a threaded ``http.server`` on 127.0.0.1
with ``ETag``/``Last-Modified`` validators, so the real pipeline (``allow_private_feeds``) polls it
exactly as it polls the world: conditional GETs, 304s and all. ``/sources.opml`` lists the feeds.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from sources.catalogue import load_catalogue
from sources.demo.formats import CONTENT_TYPES, EXTENSIONS, Channel, FeedFormat, render
from sources.demo.stories import DemoItem, load_demo_items
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
        self._server: _DemoHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._feeds: dict[str, DemoFeed] = {}

    @property
    def items(self) -> list[DemoItem]:
        return list(self._items)

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("DemoFeedServer is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

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
        server = _DemoHTTPServer(self._address, self)
        self._server = server
        self._feeds = self._render()
        self._thread = threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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


class _DemoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], demo: DemoFeedServer) -> None:
        self.demo = demo
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a poller hung up mid-response: nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so nothing is still answered after stop().
    protocol_version = "HTTP/1.0"
    server_version = "babelwire-demo/1"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo runs inside ``serve`` and tests."""

    def _respond(self, send_body: bool) -> None:
        assert isinstance(self.server, _DemoHTTPServer)
        demo = self.server.demo
        path = urlsplit(self.path).path
        if path == "/sources.opml":
            self._plain(
                200, "text/x-opml; charset=utf-8", export_opml(demo.sources(), "babelwire demo"), send_body
            )
            return
        if path == "/":
            self._plain(200, "application/json", demo.index_json(), send_body)
            return
        feed = demo.feed_at(path)
        if feed is None:
            self._plain(404, "text/plain; charset=utf-8", b"no such demo feed\n", send_body)
            return
        not_modified = self._not_modified(feed)
        self.send_response(304 if not_modified else 200)
        self.send_header("ETag", feed.etag)
        self.send_header("Last-Modified", format_datetime(feed.last_modified, usegmt=True))
        self.send_header("Cache-Control", "max-age=60")
        if not_modified:
            self.end_headers()
            return
        self.send_header("Content-Type", CONTENT_TYPES[feed.format])
        self.send_header("Content-Length", str(len(feed.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(feed.body)

    def _not_modified(self, feed: DemoFeed) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
            return "*" in tags or feed.etag in tags
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since:
            try:
                since = parsedate_to_datetime(if_modified_since)
            except (TypeError, ValueError):
                return False
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            return feed.last_modified <= since
        return False

    def _plain(self, status: int, content_type: str, body: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

"""The one loopback feed server: canned or scripted responses on 127.0.0.1, for the offline demo,
the tests and the benchmarks.

A route maps a request path (with its query, else without) to a :class:`Response` — served with a
strong ``ETag`` and optional ``Last-Modified``, answering conditional GETs with 304 — or to a
callable that writes the reply itself on the :class:`RequestHandler` (hostile servers in tests:
hanging, dripping, oversized). The server counts hits per path, keeps each request's headers and
the number of requests in flight, and stops at once (``stopping`` is set for routes that wait).
A POST (a WebSub hub's ping, in tests) is recorded in ``posts`` as (path, body) and answered with
its route's status, 204 without one.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass
class Response:
    """A canned response. ``etag``: True computes one from the body, a string is used as it is."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunks: Callable[[], Iterator[bytes]] | None = None
    """Send the body as these chunks (``Transfer-Encoding: chunked``, HTTP/1.1 only)."""
    etag: bool | str = True
    last_modified: datetime | None = None

    def tag(self) -> str | None:
        if isinstance(self.etag, str):
            return self.etag
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"' if self.etag else None


Route = Response | Callable[["RequestHandler"], object]


class RequestHandler(BaseHTTPRequestHandler):
    """One request; scripted routes write their reply on it (``reply`` for the simple cases)."""

    server: _HTTPServer
    disable_nagle_algorithm = True
    timeout = 10
    server_version = "babelwire-feeds/1"

    def do_GET(self) -> None:
        self.server.feeds.handle(self, send_body=True)

    def do_HEAD(self) -> None:
        self.server.feeds.handle(self, send_body=False)

    def do_POST(self) -> None:
        self.server.feeds.record_post(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the server runs inside ``serve --demo``, tests and benchmarks."""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    feeds: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client hung up mid-response: nothing to report
        super().handle_error(request, client_address)


class FeedServer:
    """Serves ``routes`` on ``host`` (loopback) in a background thread; use as a context manager.

    ``keep_alive=False`` speaks HTTP/1.0 (one request per connection, so nothing is still being
    answered after ``stop``); the default HTTP/1.1 also allows chunked responses.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep_alive: bool = True) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.seen: list[dict[str, str]] = []
        """The headers of every request, in order."""
        self.posts: list[tuple[str, bytes]] = []
        """(path, body) of every POST, in order."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.changed = threading.Condition()
        """Notified whenever a request starts or ends."""
        self.stopping = threading.Event()
        handler = type(
            "Handler", (RequestHandler,), {"protocol_version": "HTTP/1.1" if keep_alive else "HTTP/1.0"}
        )
        self.httpd = _HTTPServer((host, port), handler)
        self.httpd.feeds = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str, scheme: str = "http") -> str:
        host, port = self.httpd.server_address[:2]
        return f"{scheme}://{host!s}:{port}{path}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="feed-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def handle(self, handler: RequestHandler, *, send_body: bool) -> None:
        path = handler.path
        with self.changed:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.seen.append(dict(handler.headers.items()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.changed.notify_all()
        try:
            route = self.routes.get(path)
            if route is None:
                route = self.routes.get(path.split("?", 1)[0], Response(404, b"not found", etag=False))
            if isinstance(route, Response):
                self._send(handler, route, send_body)
            else:
                route(handler)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    def record_post(self, handler: RequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self.changed:
            self.posts.append((handler.path, body))
            self.changed.notify_all()
        route = self.routes.get(handler.path)
        handler.reply(route.status if isinstance(route, Response) else 204)

    def _send(self, h: RequestHandler, resp: Response, send_body: bool) -> None:
        if resp.delay_s:
            time.sleep(resp.delay_s)
        tag = resp.tag() if resp.status == 200 else None
        validators = {"ETag": tag} if tag else {}
        if resp.status == 200 and resp.last_modified is not None:
            validators["Last-Modified"] = format_datetime(resp.last_modified, usegmt=True)
        if validators and _not_modified(h.headers, tag, resp.last_modified):
            kept = {k: v for k, v in resp.headers.items() if k.lower() == "cache-control"}
            h.reply(304, b"", {**validators, **kept})
            return
        h.send_response(resp.status)
        for name, value in {**resp.headers, **validators}.items():
            h.send_header(name, value)
        if resp.chunks is not None:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for chunk in resp.chunks():
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.write(b"0\r\n\r\n")
            return
        h.send_header("Content-Length", str(len(resp.body)))
        h.end_headers()
        if send_body:
            h.wfile.write(resp.body)


def _not_modified(headers: Message, tag: str | None, last_modified: datetime | None) -> bool:
    """If-None-Match (a list, weak tags, ``*``) decides when present, else If-Modified-Since."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return tag is not None and ("*" in tags or tag in tags)
    if_modified_since = headers.get("If-Modified-Since")
    if if_modified_since and last_modified is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return last_modified <= since
    return False

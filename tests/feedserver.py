"""A real loopback HTTP server for end-to-end tests: routes map a path to a canned response."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunks: Callable[[], Iterator[bytes]] | None = None
    etag: bool = True


class FeedServer:
    """Serves ``routes`` on 127.0.0.1; counts requests per path; 304 on a matching If-None-Match.

    POSTs (a WebSub hub's pings) are recorded in ``posts`` as (path, body) and answered with the
    route's status (204 when there is no route)."""

    def __init__(self) -> None:
        self.routes: dict[str, Response] = {}
        self.hits: dict[str, int] = {}
        self.posts: list[tuple[str, bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.posts.append((self.path, body))
                status = server.routes[self.path].status if self.path in server.routes else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                path = self.path
                server.hits[path] = server.hits.get(path, 0) + 1
                resp = server.routes.get(path, Response(404, b"not found"))
                if resp.delay_s:
                    time.sleep(resp.delay_s)
                tag = '"' + hashlib.sha256(resp.body).hexdigest()[:16] + '"'
                if resp.status == 200 and resp.etag and self.headers.get("If-None-Match") == tag:
                    self.send_response(304)
                    self.send_header("ETag", tag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                if resp.status == 200 and resp.etag:
                    self.send_header("ETag", tag)
                try:
                    if resp.chunks is not None:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for chunk in resp.chunks():
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(resp.body)))
                        self.end_headers()
                        self.wfile.write(resp.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)

"""Ingest bench server: the generated feeds on the project's loopback feed server, in a child process
(so serving does not take the GIL from the measured code), with ETag and ``If-None-Match`` → 304.

    python bench/ingest_server.py DIRECTORY    # prints the port, serves until killed
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sources.feedserver import FeedServer, Response  # noqa: E402


def serve(directory: Path) -> None:
    """Serve ``directory/*.xml`` at ``/feeds/N.xml`` until killed; prints the port on stdout first."""
    server = FeedServer()
    for path in directory.glob("*.xml"):
        body = path.read_bytes()
        server.routes[f"/feeds/{path.name}"] = Response(
            body=body,
            headers={"Content-Type": "application/rss+xml; charset=utf-8"},
            etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
        )
    serve_until_term(server)


def serve_until_term(server: FeedServer) -> None:
    """In a child started by ``child_server``: serve, print the port for the parent, stop on SIGTERM."""
    with server:
        print(server.httpd.server_address[1], flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()


@contextlib.contextmanager
def feed_server(directory: Path) -> Iterator[str]:
    """The loopback server in a child process; yields its base URL."""
    with child_server([sys.executable, __file__, str(directory)], "feed server") as url:
        yield url


@contextlib.contextmanager
def child_server(argv: list[str], what: str) -> Iterator[str]:
    """Run ``argv`` (a server that prints its port on its first line and stops on SIGTERM) as a
    child process; yields its base URL."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"{what} did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))

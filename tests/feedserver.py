"""The loopback feed server of the tests: the project's one (``sources.feedserver``), plus a gzip bomb."""

from __future__ import annotations

import gzip

from sources.feedserver import FeedServer, RequestHandler, Response

__all__ = ["FeedServer", "RequestHandler", "Response", "gzip_bomb"]


def gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)

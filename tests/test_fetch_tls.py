"""The fetcher's TLS context (certifi's CA bundle, verified) is built on the first https feed, not
at start: a round of plain-http feeds — or of 304s — never loads the bundle. Over loopback, with
both client set-ups (private feeds allowed, and the SSRF-guarded one)."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from aggregator.fetch import Fetcher, FetchResult, LazyTLSPool
from aggregator.settings import Settings
from tests.feedserver import FeedServer, Response


@pytest.mark.parametrize("allow_private", [True, False])
def test_the_tls_context_is_built_with_the_first_https_connection(allow_private: bool) -> None:
    with FeedServer() as site:
        site.routes["/feed.xml"] = Response(body=b"<rss/>", headers={"Content-Type": "application/rss+xml"})

        async def go() -> tuple[FetchResult, object, FetchResult, object]:
            # Loopback is "public" here, so the guarded client reaches the test server too.
            fetcher = Fetcher(Settings(allow_private_feeds=allow_private), is_public=lambda ip: True)
            pool = fetcher._client._transport._pool  # type: ignore[attr-defined]
            assert isinstance(pool, LazyTLSPool)
            try:
                plain = await fetcher.fetch(site.url("/feed.xml"))
                before = pool._ssl_context
                tls = await fetcher.fetch(site.url("/feed.xml", scheme="https"))
                return plain, before, tls, pool._ssl_context
            finally:
                await fetcher.aclose()

        plain, before, tls, after = asyncio.run(go())
    assert plain.status == 200 and plain.body == b"<rss/>"
    assert before is None  # plain http: no CA bundle loaded
    assert tls.error is not None and tls.error.startswith("TLS error"), tls  # a plain server: refused
    assert isinstance(after, ssl.SSLContext)
    assert after.verify_mode == ssl.CERT_REQUIRED and after.check_hostname  # verified, by name
    assert after.cert_store_stats()["x509_ca"] > 0  # the bundle is loaded

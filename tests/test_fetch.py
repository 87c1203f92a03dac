"""Fetch stage: MockTransport for every HTTP shape, real loopback servers for timing, streaming
and concurrency behaviour that only real sockets show."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import socket
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import pytest

from aggregator.fetch import Fetcher, FetchResult
from aggregator.settings import Settings
from tests.feedserver import FeedServer, RequestHandler

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
URL = "http://feeds.example.com/rss"
PUBLIC_IP = "93.184.216.34"
MB = 1024 * 1024


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "allow_private_feeds": True,
        "user_agent": "babelwire-test/1 (+https://t.example)",
    }
    values.update(overrides)
    return Settings(**values)


async def resolve_public(host: str, port: int) -> list[str]:
    return [PUBLIC_IP]


def fetch_with(
    handler: Callable[[httpx.Request], Any],
    url: str = URL,
    cfg: Settings | None = None,
    resolve: Any = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    async def go() -> FetchResult:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            fetcher = Fetcher(cfg or settings(), client, resolve=resolve)
            return await fetcher.fetch(url, etag=etag, last_modified=last_modified)

    return asyncio.run(go())


class Recorder:
    """A MockTransport handler that answers from a function and remembers every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


# --- plain responses ---------------------------------------------------------------------------


def test_200_returns_body_validators_and_content_type() -> None:
    headers = {
        "Content-Type": "application/rss+xml; charset=utf-8",
        "ETag": '"abc"',
        "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    result = fetch_with(lambda r: httpx.Response(200, content=FEED, headers=headers))
    assert result.ok
    assert result.body == FEED
    assert result.status == 200
    assert result.content_type == "application/rss+xml; charset=utf-8"
    assert result.etag == '"abc"'
    assert result.last_modified == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert result.error is None and not result.not_modified and not result.gone
    assert result.url == URL and result.final_url == URL
    assert result.elapsed_s >= 0


def test_sends_user_agent_and_conditional_headers() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, content=FEED))
    fetch_with(recorder, etag='"v7"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT")
    sent = recorder.requests[0].headers
    assert sent["If-None-Match"] == '"v7"'
    assert sent["If-Modified-Since"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert sent["User-Agent"] == "babelwire-test/1 (+https://t.example)"
    assert "gzip" in sent["Accept-Encoding"]


def test_no_conditional_headers_without_validators() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, content=FEED))
    fetch_with(recorder)
    assert "If-None-Match" not in recorder.requests[0].headers
    assert "If-Modified-Since" not in recorder.requests[0].headers


def test_304_is_not_modified_without_body_and_keeps_validators() -> None:
    result = fetch_with(
        lambda r: httpx.Response(304), etag='"v1"', last_modified="Tue, 20 Oct 2015 07:28:00 GMT"
    )
    assert result.not_modified and result.status == 304
    assert result.body is None and not result.ok and result.error is None
    assert result.etag == '"v1"'
    assert result.last_modified == "Tue, 20 Oct 2015 07:28:00 GMT"


def test_304_with_a_new_etag_replaces_the_old_one() -> None:
    result = fetch_with(lambda r: httpx.Response(304, headers={"ETag": '"v2"'}), etag='"v1"')
    assert result.etag == '"v2"'


@pytest.mark.parametrize(("status", "gone"), [(404, False), (410, True), (500, False), (403, False)])
def test_http_errors_are_results(status: int, gone: bool) -> None:
    result = fetch_with(lambda r: httpx.Response(status, content=b"nope"))
    assert result.error == f"HTTP {status}"
    assert result.status == status
    assert result.gone is gone
    assert result.body is None and not result.ok
    assert result.retry_after_s is None


def test_429_retry_after_seconds() -> None:
    result = fetch_with(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    assert result.error == "HTTP 429"
    assert result.retry_after_s == 120.0


def test_503_retry_after_http_date_is_measured_from_the_date_header() -> None:
    headers = {"Date": "Wed, 21 Oct 2015 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2015 07:31:30 GMT"}
    result = fetch_with(lambda r: httpx.Response(503, headers=headers))
    assert result.error == "HTTP 503"
    assert result.retry_after_s == 210.0


def test_retry_after_http_date_without_date_header_counts_from_now() -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    result = fetch_with(lambda r: httpx.Response(429, headers={"Retry-After": later}))
    assert result.retry_after_s is not None
    assert 3000 < result.retry_after_s <= 3600


def test_retry_after_garbage_is_ignored() -> None:
    result = fetch_with(lambda r: httpx.Response(429, headers={"Retry-After": "soon-ish"}))
    assert result.error == "HTTP 429" and result.retry_after_s is None


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        ({"Cache-Control": "public, max-age=900"}, 900.0),
        ({"Cache-Control": "max-age=60", "Expires": "Wed, 21 Oct 2015 09:28:00 GMT"}, 60.0),
        ({"Date": "Wed, 21 Oct 2015 07:28:00 GMT", "Expires": "Wed, 21 Oct 2015 08:28:00 GMT"}, 3600.0),
        ({"Expires": "0"}, 0.0),
        ({"Cache-Control": "no-cache"}, 0.0),
        ({}, None),
    ],
)
def test_cache_hint(headers: dict[str, str], hint: float | None) -> None:
    result = fetch_with(lambda r: httpx.Response(200, content=FEED, headers=headers))
    assert result.cache_hint_s == hint


# --- redirects ---------------------------------------------------------------------------------


def redirects(chain: dict[str, tuple[int, str]]) -> Recorder:
    """Paths in ``chain`` redirect (status, location); any other path serves the feed."""

    def answer(request: httpx.Request) -> httpx.Response:
        hop = chain.get(request.url.path)
        if hop is None:
            return httpx.Response(200, content=FEED)
        return httpx.Response(hop[0], headers={"Location": hop[1]})

    return Recorder(answer)


def test_redirect_chain_within_limit_is_followed() -> None:
    recorder = redirects(
        {"/rss": (301, "/a"), "/a": (308, "http://other.example.com/b"), "/b": (301, "/feed")}
    )
    result = fetch_with(recorder, cfg=settings(max_redirects=3))
    assert result.ok and result.body == FEED
    assert result.url == URL
    assert result.final_url == "http://other.example.com/feed"
    assert result.permanent_redirect
    assert [str(r.url) for r in recorder.requests][-1] == "http://other.example.com/feed"


def test_a_temporary_hop_makes_the_redirect_not_permanent() -> None:
    result = fetch_with(redirects({"/rss": (301, "/a"), "/a": (302, "/feed")}))
    assert result.ok and not result.permanent_redirect


def test_no_redirect_is_not_a_permanent_redirect() -> None:
    assert not fetch_with(redirects({})).permanent_redirect


def test_conditional_headers_follow_the_redirect() -> None:
    recorder = redirects({"/rss": (301, "/feed")})
    fetch_with(recorder, etag='"e"')
    assert all(r.headers["If-None-Match"] == '"e"' for r in recorder.requests)


def test_redirect_loop_is_an_error() -> None:
    recorder = redirects({"/rss": (302, "/a"), "/a": (302, "/rss")})
    result = fetch_with(recorder, cfg=settings(max_redirects=10))
    assert result.error is not None and "redirect loop" in result.error
    assert not result.ok
    assert len(recorder.requests) == 2


def test_too_many_redirects() -> None:
    chain = {f"/{i}": (302, f"/{i + 1}") for i in range(10)}
    chain["/rss"] = (302, "/0")
    recorder = redirects(chain)
    result = fetch_with(recorder, cfg=settings(max_redirects=3))
    assert result.error == "too many redirects (more than 3)"
    assert len(recorder.requests) == 4


def test_zero_redirects_allowed_means_a_redirect_is_an_error() -> None:
    result = fetch_with(redirects({"/rss": (301, "/feed")}), cfg=settings(max_redirects=0))
    assert result.error == "too many redirects (more than 0)"


def test_redirect_without_location() -> None:
    result = fetch_with(lambda r: httpx.Response(302))
    assert result.error == "redirect without Location" and result.status == 302


def test_redirect_to_another_scheme_is_refused() -> None:
    recorder = redirects({"/rss": (302, "file:///etc/passwd")})
    result = fetch_with(recorder)
    assert result.error == "unsupported scheme 'file'"
    assert len(recorder.requests) == 1


def test_redirect_to_a_private_address_is_refused() -> None:
    recorder = redirects({"/rss": (302, "http://169.254.169.254/latest/meta-data")})
    result = fetch_with(
        recorder, cfg=settings(allow_private_feeds=False), resolve=resolve_public_except_literals
    )
    assert result.error == "refused private address 169.254.169.254"
    assert len(recorder.requests) == 1


async def resolve_public_except_literals(host: str, port: int) -> list[str]:
    return [host] if host[0].isdigit() or ":" in host else [PUBLIC_IP]


# --- body size, compression --------------------------------------------------------------------


class Chunks:
    """An async body that counts how many chunks the client pulled."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def test_body_over_cap_stops_streaming() -> None:
    body = Chunks(bytes(64 * 1024) for _ in range(10_000))  # 640 MB if read to the end
    result = fetch_with(lambda r: httpx.Response(200, content=body), cfg=settings(max_body_bytes=MB))
    assert result.error == f"body larger than {MB} bytes"
    assert result.body is None and not result.ok
    assert body.pulled <= MB // (64 * 1024) + 1


def test_body_at_cap_is_accepted() -> None:
    body = Chunks(bytes(1024) for _ in range(1024))
    result = fetch_with(lambda r: httpx.Response(200, content=body), cfg=settings(max_body_bytes=MB))
    assert result.ok and result.body is not None and len(result.body) == MB


def test_declared_length_over_cap_is_refused_before_reading() -> None:
    body = Chunks(bytes(1024) for _ in range(10))
    headers = {"Content-Length": str(2 * MB)}
    result = fetch_with(
        lambda r: httpx.Response(200, content=body, headers=headers), cfg=settings(max_body_bytes=MB)
    )
    assert result.error == f"body larger than {MB} bytes"
    assert body.pulled == 0


@cache
def gzip_bomb(megabytes: int = 50) -> bytes:
    """``megabytes`` MB of zeros, gzipped (about a thousand times smaller), built without holding them."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MB)
    return b"".join([*(z.compress(block) for _ in range(megabytes)), z.flush()])


def test_gzip_bomb_is_cut_off_after_decompression() -> None:
    bomb = gzip_bomb()
    pieces = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]
    body = Chunks(iter(pieces))
    headers = {"Content-Encoding": "gzip"}
    result = fetch_with(
        lambda r: httpx.Response(200, content=body, headers=headers), cfg=settings(max_body_bytes=MB)
    )
    assert result.error == f"body larger than {MB} bytes"
    assert body.pulled < len(pieces)


def test_gzip_bomb_in_one_network_chunk_keeps_memory_near_the_cap() -> None:
    """httpx's own decoder would inflate this 50 KB chunk to 50 MB in one call."""
    body = Chunks(iter([gzip_bomb()]))
    headers = {"Content-Encoding": "gzip"}
    tracemalloc.start()
    try:
        result = fetch_with(
            lambda r: httpx.Response(200, content=body, headers=headers), cfg=settings(max_body_bytes=MB)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error == f"body larger than {MB} bytes"
    assert peak < 8 * MB


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-15)),
        ("identity", lambda data: data),
    ],
)
def test_compressed_bodies_are_decoded(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    text = FEED * 500
    data = compress(text)
    body = Chunks(data[i : i + 100] for i in range(0, len(data), 100))
    headers = {"Content-Encoding": encoding}
    result = fetch_with(lambda r: httpx.Response(200, content=body, headers=headers))
    assert result.ok and result.body == text


def test_corrupt_gzip_is_an_error() -> None:
    headers = {"Content-Encoding": "gzip"}
    body = Chunks(iter([b"\x1f\x8b\x08\x00garbage" * 10]))
    result = fetch_with(lambda r: httpx.Response(200, content=body, headers=headers))
    assert result.error == "could not decode gzip body"
    assert result.status == 200 and not result.ok


def test_unsupported_content_encoding_is_an_error() -> None:
    headers = {"Content-Encoding": "br"}
    result = fetch_with(lambda r: httpx.Response(200, content=Chunks(iter([b"\x00\x01"])), headers=headers))
    assert result.error == "unsupported content encoding 'br'"


# --- SSRF, schemes, bad URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1/rss", "127.0.0.1"),
        ("http://10.1.2.3/rss", "10.1.2.3"),
        ("http://192.168.0.10:8080/rss", "192.168.0.10"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[::1]/rss", "::1"),
        ("http://[::ffff:10.0.0.1]/rss", "10.0.0.1"),
        ("http://0.0.0.0/rss", "0.0.0.0"),
        ("http://2130706433/rss", "127.0.0.1"),
        ("https://localhost/rss", None),
    ],
)
def test_private_targets_are_refused(url: str, address: str | None) -> None:
    recorder = Recorder(lambda r: httpx.Response(200, content=FEED))
    result = fetch_with(recorder, url=url, cfg=settings(allow_private_feeds=False))
    assert result.error is not None and result.error.startswith("refused private address")
    if address is not None:
        assert result.error == f"refused private address {address}"
    assert recorder.requests == []
    assert result.body is None


def test_hostname_resolving_to_a_private_address_is_refused() -> None:
    async def internal(host: str, port: int) -> list[str]:
        return [PUBLIC_IP, "10.9.8.7"]  # one bad address is enough

    recorder = Recorder(lambda r: httpx.Response(200, content=FEED))
    result = fetch_with(recorder, cfg=settings(allow_private_feeds=False), resolve=internal)
    assert result.error == "refused private address 10.9.8.7"
    assert recorder.requests == []


def test_public_address_is_fetched_when_private_feeds_are_refused() -> None:
    result = fetch_with(
        lambda r: httpx.Response(200, content=FEED),
        cfg=settings(allow_private_feeds=False),
        resolve=resolve_public,
    )
    assert result.ok


def test_private_targets_are_allowed_when_configured() -> None:
    result = fetch_with(lambda r: httpx.Response(200, content=FEED), url="http://127.0.0.1/rss")
    assert result.ok


def test_dns_failure_is_a_result() -> None:
    async def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    result = fetch_with(
        lambda r: httpx.Response(200), cfg=settings(allow_private_feeds=False), resolve=nxdomain
    )
    assert result.error == "DNS lookup failed for feeds.example.com"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://feeds.example.com/rss", "unsupported scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported scheme 'file'"),
        ("javascript:alert(1)", "unsupported scheme 'javascript'"),
        ("not a url", "invalid URL: no scheme"),
        ("", "invalid URL: no scheme"),
        ("http://", "invalid URL: no host"),
        ("http://[::1/rss", None),
        ("http://feeds.example.com:99999/rss", None),
    ],
)
def test_unfetchable_urls_are_results(url: str, error: str | None) -> None:
    recorder = Recorder(lambda r: httpx.Response(200, content=FEED))
    result = fetch_with(recorder, url=url)
    assert result.error is not None
    if error is None:
        assert result.error.startswith("invalid URL")
    else:
        assert result.error == error
    assert recorder.requests == []
    assert result.url == url


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("boom"), "connection failed: boom"),
        (httpx.ReadTimeout("slow"), "timeout after 20s"),
        (httpx.RemoteProtocolError("peer closed"), "protocol error: peer closed"),
        (RuntimeError("bug in a transport"), "unexpected error: RuntimeError('bug in a transport')"),
    ],
)
def test_transport_exceptions_become_results(exc: Exception, error: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    assert fetch_with(fail).error == error


def test_passed_client_stays_open_and_fetcher_is_a_context_manager() -> None:
    async def go() -> bool:
        async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
            async with Fetcher(settings(), client) as fetcher:
                await fetcher.fetch(URL)
            return client.is_closed

    assert asyncio.run(go()) is False


# --- real loopback server ----------------------------------------------------------------------

Route = Callable[[RequestHandler], object]


@pytest.fixture
def site() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


def fetch_many(cfg: Settings, urls: list[str], **kwargs: Any) -> list[FetchResult]:
    async def go() -> list[FetchResult]:
        async with Fetcher(cfg, **kwargs) as fetcher:
            return await asyncio.gather(*(fetcher.fetch(u) for u in urls))

    return asyncio.run(go())


def test_loopback_conditional_get_round_trip(site: FeedServer) -> None:
    def conditional(h: RequestHandler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            h.reply(304, headers={"ETag": '"v1"'})
        else:
            h.reply(200, FEED, {"ETag": '"v1"', "Content-Type": "application/rss+xml"})

    site.routes["/feed"] = conditional

    async def go() -> tuple[FetchResult, FetchResult]:
        async with Fetcher(settings()) as fetcher:
            first = await fetcher.fetch(site.url("/feed"))
            second = await fetcher.fetch(site.url("/feed"), etag=first.etag)
            return first, second

    first, second = asyncio.run(go())
    assert first.ok and first.body == FEED and first.etag == '"v1"'
    assert second.not_modified and second.body is None
    assert site.seen[0]["User-Agent"] == "babelwire-test/1 (+https://t.example)"


def test_loopback_server_that_never_answers_times_out(site: FeedServer) -> None:
    site.routes["/hang"] = lambda h: site.stopping.wait(10)
    [result] = fetch_many(settings(fetch_timeout_s=0.5), [site.url("/hang")])
    assert result.error == "timeout after 0.5s"
    assert result.status is None and result.body is None


def test_loopback_body_dripping_slowly_hits_the_overall_deadline(site: FeedServer) -> None:
    """Each read succeeds in time, so only a deadline for the whole exchange stops this."""

    def drip(h: RequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        while not site.stopping.wait(0.05):
            h.wfile.write(b"x")
            h.wfile.flush()

    site.routes["/drip"] = drip
    [result] = fetch_many(settings(fetch_timeout_s=0.5), [site.url("/drip")])
    assert result.error == "timeout after 0.5s"


def test_loopback_50mb_body_is_cut_off_at_the_cap(site: FeedServer) -> None:
    sent = [0]
    total = 50 * MB

    def huge(h: RequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(total))  # honest length; the cap applies while streaming
        h.end_headers()
        block = bytes(64 * 1024)
        while sent[0] < total and not site.stopping.is_set():
            h.wfile.write(block)
            sent[0] += len(block)

    site.routes["/huge"] = huge
    cap = 2 * MB
    [result] = fetch_many(settings(max_body_bytes=cap), [site.url("/huge")])
    assert result.error == f"body larger than {cap} bytes"
    assert result.body is None
    assert sent[0] < total


def test_loopback_50mb_body_without_declared_length_is_cut_off(site: FeedServer) -> None:
    sent = [0]

    def huge(h: RequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        block = bytes(64 * 1024)
        while sent[0] < 50 * MB and not site.stopping.is_set():
            h.wfile.write(block)
            sent[0] += len(block)

    site.routes["/huge"] = huge
    [result] = fetch_many(settings(max_body_bytes=MB), [site.url("/huge")])
    assert result.error == f"body larger than {MB} bytes"
    assert sent[0] < 50 * MB


def test_loopback_redirect_loop(site: FeedServer) -> None:
    site.routes["/a"] = lambda h: h.reply(302, headers={"Location": "/b"})
    site.routes["/b"] = lambda h: h.reply(302, headers={"Location": site.url("/a")})
    [result] = fetch_many(settings(), [site.url("/a")])
    assert result.error == f"redirect loop at {site.url('/a')}"
    assert len(site.seen) == 2


def test_loopback_redirect_is_followed(site: FeedServer) -> None:
    site.routes["/old"] = lambda h: h.reply(301, headers={"Location": "/new"})
    site.routes["/new"] = lambda h: h.reply(200, FEED)
    [result] = fetch_many(settings(), [site.url("/old")])
    assert result.ok and result.final_url == site.url("/new") and result.permanent_redirect


def held_until(site: FeedServer, crowd: int, patience_s: float) -> Route:
    """A route that holds requests open until ``crowd`` have once been in flight together (or
    patience runs out), so overlap is seen whenever the client allows it, without timing."""

    def route(h: RequestHandler) -> None:
        with site.changed:
            site.changed.wait_for(lambda: site.max_in_flight >= crowd or site.stopping.is_set(), patience_s)
        h.reply(200, FEED)

    return route


def test_loopback_per_host_concurrency_cap(site: FeedServer) -> None:
    site.routes["/feed"] = held_until(site, crowd=3, patience_s=0.2)
    results = fetch_many(settings(per_host_concurrency=2), [site.url(f"/feed?n={i}") for i in range(8)])
    assert all(r.ok for r in results)
    assert len(site.seen) == 8
    assert site.max_in_flight <= 2


def test_loopback_concurrency_is_really_observed_when_the_cap_allows_it(site: FeedServer) -> None:
    """The control for the cap test: the server's counter does see overlapping requests."""
    site.routes["/feed"] = held_until(site, crowd=4, patience_s=5)
    results = fetch_many(settings(per_host_concurrency=4), [site.url(f"/feed?n={i}") for i in range(8)])
    assert all(r.ok for r in results)
    assert site.max_in_flight > 2


def test_loopback_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [result] = fetch_many(settings(), [f"http://127.0.0.1:{port}/feed"])
    assert result.error == "connection refused"


def test_loopback_tls_to_a_plain_http_server_is_a_tls_error(site: FeedServer) -> None:
    [result] = fetch_many(settings(), [site.url("/feed", scheme="https")])
    assert result.error is not None and result.error.startswith("TLS error")


def test_loopback_connection_reaching_a_private_peer_is_refused(site: FeedServer) -> None:
    """DNS said public, the socket reached 127.0.0.1 (rebinding): the response is discarded."""
    site.routes["/feed"] = lambda h: h.reply(200, FEED)
    [result] = fetch_many(settings(allow_private_feeds=False), [site.url("/feed")], resolve=resolve_public)
    assert result.error == "refused private address 127.0.0.1"
    assert result.body is None


def test_loopback_many_feeds_share_one_client(site: FeedServer) -> None:
    site.routes["/feed"] = lambda h: h.reply(200, FEED * 50, {"Content-Type": "application/rss+xml"})
    results = fetch_many(settings(per_host_concurrency=8), [site.url(f"/feed?n={i}") for i in range(100)])
    assert all(r.ok and r.body == FEED * 50 for r in results)
    assert len(site.seen) == 100

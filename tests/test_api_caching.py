"""The response micro-cache and HTTP validators (api/caching.py), with a hand-driven clock."""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from starlette.requests import Request

from api.caching import Rendered, ResponseCache, cached_response, raw_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Builds:
    """A build function that counts its calls and returns the call number."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            self.calls += 1
            return self.calls


def keep_all(value: object) -> bool:
    return True


def run(coro_fn: Callable[[], object]) -> object:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


def test_fresh_values_are_reused_and_expired_ones_rebuilt() -> None:
    clock, build = Clock(), Builds()
    cache: ResponseCache[int] = ResponseCache(1.0, stale=0.0, clock=clock)

    async def scenario() -> list[int]:
        got = [await cache.get("k", build, keep_all), await cache.get("k", build, keep_all)]
        clock.now += 1.5
        got.append(await cache.get("k", build, keep_all))
        got.append(await cache.get("other", build, keep_all))
        return got

    assert run(scenario) == [1, 1, 2, 3]


def test_stale_value_is_answered_while_one_refresh_runs() -> None:
    clock, build = Clock(), Builds()
    cache: ResponseCache[int] = ResponseCache(1.0, stale=4.0, clock=clock)

    async def scenario() -> list[int]:
        got = [await cache.get("k", build, keep_all)]
        clock.now += 2.0  # expired, within the stale window
        got += [await cache.get("k", build, keep_all) for _ in range(5)]
        while cache._pending:
            await asyncio.sleep(0.01)
        got.append(await cache.get("k", build, keep_all))
        clock.now += 10.0  # past the stale window: wait for the rebuild
        got.append(await cache.get("k", build, keep_all))
        return got

    assert run(scenario) == [1, 1, 1, 1, 1, 1, 2, 3]
    assert build.calls == 3


def test_concurrent_misses_share_one_build() -> None:
    release = threading.Event()
    build = Builds()

    def slow() -> int:
        release.wait(10)
        return build()

    cache: ResponseCache[int] = ResponseCache(1.0)

    async def scenario() -> list[int]:
        waiters = [asyncio.ensure_future(cache.get("k", slow, keep_all)) for _ in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        return list(await asyncio.gather(*waiters))

    assert run(scenario) == [1] * 20
    assert build.calls == 1


def test_values_not_kept_and_a_zero_ttl_are_never_cached() -> None:
    build = Builds()
    refusing: ResponseCache[int] = ResponseCache(60.0)
    off: ResponseCache[int] = ResponseCache(0.0)

    async def scenario() -> list[int]:
        got = [await refusing.get("k", build, lambda v: False) for _ in range(2)]
        got += [await off.get("k", build, keep_all) for _ in range(2)]
        return got

    assert run(scenario) == [1, 2, 3, 4]


def test_raw_aliases_follow_the_entry_they_point_at() -> None:
    clock = Clock()
    cache: ResponseCache[int] = ResponseCache(1.0, clock=clock)

    async def scenario() -> None:
        await cache.get("k", Builds(), keep_all)

    assert cache.lookup_raw("raw") is None
    cache.alias("raw", "missing", "x")
    assert cache.lookup_raw("raw") is None
    run(scenario)
    cache.alias("raw", "k", "extra")
    assert cache.lookup_raw("raw") == (1, "extra")
    clock.now += 1.0
    assert cache.lookup_raw("raw") is None


def _request(headers: dict[str, str], path: str = "/v1/feed", query: bytes = b"") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": path, "query_string": query, "headers": raw})


def test_validators_and_encodings() -> None:
    big = Rendered.of(b'{"x": "' + b"a" * 3000 + b'"}')
    small = Rendered.of(b"{}")
    plain = cached_response(_request({}), big, "public, max-age=5")
    assert (
        plain.status_code == 200
        and plain.headers["etag"] == big.etag
        and "content-encoding" not in plain.headers
    )
    zipped = cached_response(_request({"Accept-Encoding": "br, gzip;q=0.5"}), big, "c")
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["etag"] == big.etag[:-1] + '-gz"'
    assert gzip.decompress(zipped.body) == big.body
    refused = cached_response(_request({"Accept-Encoding": "gzip;q=0"}), big, "c")
    assert "content-encoding" not in refused.headers
    assert (
        "content-encoding" not in cached_response(_request({"Accept-Encoding": "gzip"}), small, "c").headers
    )
    for header in (big.etag, f'"a", {big.etag}', f"W/{big.etag}", "*"):
        assert cached_response(_request({"If-None-Match": header}), big, "c").status_code == 304
    assert cached_response(_request({"If-None-Match": '"nope"'}), big, "c").status_code == 200
    # the identity ETag does not validate the gzip representation
    assert (
        cached_response(
            _request({"If-None-Match": big.etag, "Accept-Encoding": "gzip"}), big, "c"
        ).status_code
        == 200
    )


def test_last_modified_and_if_modified_since() -> None:
    modified = datetime(2026, 11, 25, 9, 30, 15, 500_000, tzinfo=UTC)
    feed = Rendered.of(b"<rss/>", "application/rss+xml; charset=utf-8", modified)
    plain = cached_response(_request({}), feed, "c")
    assert plain.headers["last-modified"] == "Wed, 25 Nov 2026 09:30:15 GMT"
    assert plain.headers["content-type"] == "application/rss+xml; charset=utf-8"
    for since, status in (
        ("Wed, 25 Nov 2026 09:30:15 GMT", 304),
        ("Thu, 26 Nov 2026 00:00:00 GMT", 304),
        ("Wed, 25 Nov 2026 09:30:14 GMT", 200),
        ("not a date", 200),
    ):
        assert cached_response(_request({"If-Modified-Since": since}), feed, "c").status_code == status
    # If-None-Match wins when both are sent (RFC 9110 13.2.2)
    both = {"If-None-Match": '"other"', "If-Modified-Since": "Thu, 26 Nov 2026 00:00:00 GMT"}
    assert cached_response(_request(both), feed, "c").status_code == 200
    assert "last-modified" not in cached_response(_request({}), Rendered.of(b"{}"), "c").headers


def test_raw_key_is_path_query_language_and_host() -> None:
    scope = _request(
        {"Accept-Language": "pt-BR", "Accept-Encoding": "gzip", "Host": "a.example"}, query=b"limit=5"
    ).scope
    assert raw_key(scope) == ("/v1/feed", b"limit=5", b"pt-BR", b"a.example")
    assert raw_key(_request({}).scope) == ("/v1/feed", b"", b"", b"")


def test_a_new_generation_drops_values_and_is_read_at_most_every_interval() -> None:
    """The editorial generation (the newest audit row in the app) is read at most once per
    ``generation_every``; a value built under an older one is never answered, not even stale;
    ``clear`` (an edit in this process) reads it again at once; a failed read answers nothing
    from the cache."""
    clock, build = Clock(), Builds()
    state: dict[str, int | None] = {"generation": 1}
    reads: list[float] = []

    def generation() -> int | None:
        reads.append(clock.now)
        return state["generation"]

    cache: ResponseCache[int] = ResponseCache(
        1.0, stale=4.0, clock=clock, generation=generation, generation_every=0.25
    )

    async def scenario() -> list[int]:
        got = [await cache.get("k", build, keep_all) for _ in range(3)]  # built once, one read
        state["generation"] = 2  # another process's edit
        got.append(await cache.get("k", build, keep_all))  # not seen yet: same instant
        clock.now += 0.3
        got.append(await cache.get("k", build, keep_all))  # seen: rebuilt, not the stale value
        state["generation"] = 3
        cache.clear()  # this process's edit
        got.append(await cache.get("k", build, keep_all))
        state["generation"] = None  # the database cannot say
        clock.now += 0.3
        got.append(await cache.get("k", build, keep_all))
        got.append(await cache.get("k", build, keep_all))
        return got

    assert run(scenario) == [1, 1, 1, 1, 2, 3, 4, 5]
    assert len(reads) < 10


def test_a_gzip_revalidation_is_answered_without_compressing() -> None:
    fresh = Rendered.of(b'{"x": "' + b"b" * 3000 + b'"}')
    r = cached_response(_request({"If-None-Match": fresh.gzip_etag, "Accept-Encoding": "gzip"}), fresh, "c")
    assert (
        r.status_code == 304 and r.headers["etag"] == fresh.gzip_etag and "content-encoding" not in r.headers
    )
    assert fresh._gzip is None
    sent = cached_response(_request({"Accept-Encoding": "gzip"}), fresh, "c")
    assert sent.headers["etag"] == fresh.gzip_etag and gzip.decompress(sent.body) == fresh.body


def test_a_last_modified_within_the_current_second_is_not_a_validator() -> None:
    """Two changes in one second share a Last-Modified date: a fresh one is withheld, so a
    client's If-Modified-Since cannot hide the second change."""
    now = datetime.now(UTC)
    feed = Rendered.of(b"<rss/>", "application/rss+xml; charset=utf-8", now)
    assert "last-modified" not in cached_response(_request({}), feed, "c").headers
    since = format_datetime(now + timedelta(seconds=5), usegmt=True)
    assert cached_response(_request({"If-Modified-Since": since}), feed, "c").status_code == 200

"""The polling policy (pure) and concurrent claiming (real databases)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from aggregator.fetch import FetchResult
from aggregator.poll import claim_due_sources
from aggregator.registry import add_sources
from aggregator.settings import Settings
from aggregator.store import plan_next_check, publishing_interval_s
from sources.opml import SourceSpec

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
S = Settings(min_interval_s=300, max_interval_s=6 * 3600, max_backoff_s=24 * 3600)


def result(**kw: object) -> FetchResult:
    base: dict[str, object] = dict(
        url="http://x/f",
        final_url="http://x/f",
        status=200,
        body=b"<rss/>",
        content_type="application/rss+xml",
        etag=None,
        last_modified=None,
        not_modified=False,
        gone=False,
        error=None,
        retry_after_s=None,
        cache_hint_s=None,
        elapsed_s=0.01,
    )
    base.update(kw)
    return FetchResult(**base)  # type: ignore[arg-type]


def test_busy_feed_is_checked_often_quiet_feed_rarely() -> None:
    busy = [NOW - timedelta(minutes=10 * i) for i in range(10)]
    quiet = [NOW - timedelta(days=2 * i) for i in range(10)]
    b = plan_next_check(
        settings=S, now=NOW, source_id=1, error_count=0, fetch=result(), published=busy, failed=False
    )
    q = plan_next_check(
        settings=S, now=NOW, source_id=1, error_count=0, fetch=result(), published=quiet, failed=False
    )
    assert b.interval_s == 300 and q.interval_s == 6 * 3600
    assert b.error_count == 0 and b.enabled


def test_cache_hint_and_retry_after_are_honoured() -> None:
    busy = [NOW - timedelta(minutes=i) for i in range(10)]
    p = plan_next_check(
        settings=S,
        now=NOW,
        source_id=1,
        error_count=0,
        fetch=result(cache_hint_s=1800),
        published=busy,
        failed=False,
    )
    assert p.interval_s == 1800
    r = plan_next_check(
        settings=S,
        now=NOW,
        source_id=1,
        error_count=0,
        fetch=result(status=429, body=None, error="HTTP 429", retry_after_s=7200),
        failed=True,
    )
    assert r.at >= NOW + timedelta(seconds=7200) and r.error_count == 1


def test_gone_disables() -> None:
    p = plan_next_check(
        settings=S,
        now=NOW,
        source_id=1,
        error_count=0,
        fetch=result(status=410, body=None, gone=True, error="HTTP 410"),
        failed=True,
    )
    assert not p.enabled


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=10**6))
def test_backoff_grows_and_is_bounded(errors: int, source_id: int) -> None:
    fail = result(status=500, body=None, error="HTTP 500")
    p = plan_next_check(settings=S, now=NOW, source_id=source_id, error_count=errors, fetch=fail, failed=True)
    assert p.enabled and p.error_count == errors + 1
    assert 0.8 * S.min_interval_s <= p.interval_s <= S.max_backoff_s
    if errors >= 20:  # failing for days: about once a day, never dropped
        assert p.interval_s >= 0.8 * S.max_backoff_s


def test_backoff_is_monotone_until_the_cap() -> None:
    fail = result(status=500, body=None, error="HTTP 500")
    delays = [
        plan_next_check(settings=S, now=NOW, source_id=7, error_count=n, fetch=fail, failed=True).interval_s
        for n in range(12)
    ]
    assert delays[5] > delays[0] * 8
    assert max(delays) <= S.max_backoff_s


def test_publishing_interval_needs_enough_entries() -> None:
    assert publishing_interval_s([NOW]) is None
    assert publishing_interval_s([NOW - timedelta(hours=h) for h in range(5)]) == 3600


def test_concurrent_workers_never_claim_the_same_source(engine: sa.Engine) -> None:
    add_sources(
        engine,
        [
            SourceSpec(url=f"http://feeds.example/{i}.xml", outlet="gate", locale="en", title=None)
            for i in range(40)
        ],
    )
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def work(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        for _ in range(5):
            got += [
                s.id or 0 for s in claim_due_sources(engine, name, now=datetime.now(UTC), lease_s=60, limit=4)
            ]
        claimed[name] = got

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in claimed.values() for i in ids]
    assert len(every) == len(set(every)) == 40


def test_unexpected_failure_releases_the_lease_with_the_shared_backoff(engine: sa.Engine) -> None:
    from sqlmodel import Session, select

    from aggregator.models import Source
    from aggregator.poll import _release_with_error
    from aggregator.store import backoff_s

    add_sources(
        engine, [SourceSpec(url="http://feeds.example/x.xml", outlet="gate", locale="en", title=None)]
    )
    delays = []
    for n in range(6):
        (source,) = claim_due_sources(engine, "w", now=datetime.now(UTC), lease_s=60, all_sources=True)
        before = datetime.now(UTC)
        _release_with_error(engine, S, source, "RuntimeError: boom")
        with Session(engine) as session:
            row = session.exec(select(Source)).one()
        assert row.lease_owner is None and row.error_count == n + 1 and row.last_error == "RuntimeError: boom"
        delay = (row.next_check_at - before).total_seconds()
        # The same back-off as a failed fetch: doubling with jitter, never a fixed delay.
        assert abs(delay - backoff_s(S, source.id or 0, n + 1)) < 5
        delays.append(delay)
    assert delays[5] > delays[0] * 8

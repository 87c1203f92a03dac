"""``api.hotpath``: ``/v1/feed`` and its re-exports answered ahead of FastAPI's parameter machinery
must answer exactly what the documented FastAPI routes answer, for well-formed and malformed
requests alike; and the pinned part of a page must stay an index lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.settings import Settings, load_settings
from api.app import create_app
from api.dbapi import compiled_for
from api.feed_statements import feed_statement
from api.hotpath import HotRoutes
from tests.test_api import SEEDS, T0, Member, Seeder, TestClient

QUERIES = [
    "",
    "locale=en",
    "locale=pt-PT&limit=2",
    "locale=en&limit=1&tickers=btc,ETH",
    "locale=en&outlet=gate",
    "locale=en&outlet=nosuch",
    "locale=xx",
    "locale=en&locale=pt-PT",
    "locale=en&limit=0",
    "locale=en&limit=abc",
    "locale=en&limit=",
    "locale=en&limit=007",
    "locale=en&limit=100000",
    "locale=en&limit=5%0A",
    "locale=en&untranslated=include",
    "locale=en&untranslated=bogus",
    "locale=en&cursor=garbage",
    "locale=en&tickers=" + ",".join(f"T{i}" for i in range(30)),
    "locale=en&tickers=B%C3%A4D",
    "unknown=1",
]
PATHS = ["/v1/feed", "/v1/feed.rss", "/v1/feed.atom", "/v1/feed.json"]
HEADERS = [{}, {"Accept-Language": "pt-BR,pt;q=0.9"}, {"Accept-Encoding": "gzip"}]


def _without_hot_routes(app: Any) -> Any:
    """The same app with every request going through FastAPI's routing (the documented routes)."""
    stack = app.router.middleware_stack
    assert isinstance(stack, HotRoutes)
    app.router.middleware_stack = stack.app
    return app


@pytest.fixture
def seeded(engine: sa.Engine) -> None:
    _seed(Seeder(engine))


def _seed(seed: Seeder) -> None:
    for i in range(4):
        seed.story(
            Member("en", tickers=["BTC"]),
            Member("pt-PT", outlet="coindesk"),
            at=T0 + timedelta(minutes=i),
        )
    seed.story(Member("vi"), at=T0 + timedelta(minutes=9))


@pytest.mark.parametrize("path", PATHS)
def test_hot_routes_answer_as_the_documented_routes(
    path: str, settings: Settings, engine: sa.Engine, seeded: None
) -> None:
    hot = create_app(settings, engine, seed_disclaimers=SEEDS, response_cache_s=0)
    plain = _without_hot_routes(create_app(settings, engine, seed_disclaimers=SEEDS, response_cache_s=0))
    with (
        TestClient(hot, raise_server_exceptions=False) as a,
        TestClient(plain, raise_server_exceptions=False) as b,
    ):
        statuses = set()
        for query in QUERIES:
            for headers in HEADERS:
                url = f"{path}?{query}" if query else path
                x, y = a.get(url, headers=headers), b.get(url, headers=headers)
                assert (x.status_code, x.content) == (y.status_code, y.content), (url, headers)
                drop = {"date", "content-length"}
                assert {k: v for k, v in x.headers.items() if k not in drop} == {
                    k: v for k, v in y.headers.items() if k not in drop
                }, (url, headers)
                if x.status_code == 200:
                    revalidated = a.get(url, headers={**headers, "If-None-Match": x.headers["etag"]})
                    assert revalidated.status_code == 304 and revalidated.headers["etag"] == x.headers["etag"]
                statuses.add(x.status_code)
    assert {200, 400} <= statuses
    if path == "/v1/feed":
        assert 422 in statuses  # answered by the FastAPI route through the fallback


def test_hot_route_requests_are_counted_under_the_route_template(
    settings: Settings, engine: sa.Engine, seeded: None
) -> None:
    app = create_app(settings, engine, seed_disclaimers=SEEDS, response_cache_s=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/v1/feed.rss?locale=en").status_code == 200
        assert c.get("/v1/feed?locale=en&limit=0").status_code == 422
        metrics = c.get("/metrics").text
    assert 'route="/v1/feed.rss",status="200"} 1.0' in metrics
    assert 'route="/v1/feed",status="422"} 1.0' in metrics


def test_pinned_entries_are_found_through_their_index(tmp_path: Path) -> None:
    """SQLite's statistics cannot tell it that almost no entry is pinned: the pinned part of a first
    page must search (locale, pinned_until), not walk every entry of the locale (it did, and a
    first page cost 20 ms at 10k stories). A SQLite query-plan check, after ANALYZE."""
    engine = make_engine(load_settings(database_url=f"sqlite:///{tmp_path}/plan.sqlite"))
    upgrade(engine)
    seed = Seeder(engine)
    for i in range(60):
        seed.story(Member("en", tickers=["BTC"]), Member("pt-PT"), at=T0 + timedelta(minutes=i))
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    for tickers, by_outlet in ((0, False), (1, False), (0, True), (2, True)):
        statement = compiled_for(feed_statement(False, tickers, by_outlet, False, 21), engine.dialect)
        values = {
            "locale": "en", "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"), "outlet": "gate",
            **{f"ticker_{i}": "BTC" for i in range(tickers)},
        }  # fmt: skip
        args = [values.get(name, statement.defaults.get(name)) for name in statement.positional or ()]
        with engine.connect() as conn:
            plan = [
                row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql, tuple(args))
            ]
        pinned = [step for step in plan if " pe " in f" {step} "]
        assert pinned and all("ix_storyentry_pinned" in step for step in pinned), plan
    engine.dispose()

"""PostgreSQL restarted under load: a ``worker`` and a ``serve --no-scheduler`` process keep running.

While the server is down the API answers every request with a 503 in the format asked for (JSON
``{"error": …}``, the re-exported RSS feed's XML ``<error>``), with ``Retry-After``, and never
hangs; the worker logs one line per failed round. Once the server is back both reconnect by
themselves: nothing published meanwhile is lost, nothing is stored twice, every item gets its
story, and neither process ever printed a traceback.

The test runs its own PostgreSQL server (not the session's), since it stops and starts it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, RequestHandler
from tests.livesite import free_port
from tests.pgserver import PostgresServer
from tests.processes import Process, wait_until

pytestmark = pytest.mark.postgres

SOURCES = 12
RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
ITEMS_AT_EPOCH = {1: 3, 2: 5, 3: 7}
"""How many items every feed carries in each phase: before the outage, during it, after it."""
ROUTES = (
    "/v1/feed?locale=en&limit={n}",
    "/v1/feed.rss?locale=en&limit={n}",
    "/v1/feed.json?locale=en&limit={n}",
)


@dataclass(frozen=True)
class Answer:
    phase: str
    route: str
    status: int | None
    headers: dict[str, str]
    body: bytes
    failure: str | None = None
    until: str = ""
    """The phase when the answer came (a request asked while down may be answered once back)."""


class Outlets:
    """``SOURCES`` feeds that publish new items when the test moves on to the next epoch."""

    def __init__(self) -> None:
        self.epoch = 1

    def feed(self, n: int) -> bytes:
        items = "".join(
            f"<item><guid>src{n}-item{k}</guid><title>Outlet {n} bulletin {k}: token T{n}X{k} listed</title>"
            f"<link>https://outlet{n}.example/news/{k}</link>"
            f"<description>Exchange {n} lists token T{n}X{k} for trading, number {n * 100 + k}.</description>"
            f"<pubDate>Tue, 01 Dec 2026 10:00:{k:02d} GMT</pubDate></item>"
            for k in range(ITEMS_AT_EPOCH[self.epoch])
        )
        return (
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>outlet {n}</title>{items}</channel></rss>'
        ).encode()

    def route(self, n: int) -> Callable[[RequestHandler], None]:
        return lambda h: h.reply(200, self.feed(n), RSS)


class Load:
    """A client thread cycling through the API's feed routes (a new ``limit`` each time, so no cache
    answers for the database), recording every answer with the phase it was asked in."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.phase = "up"
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        # A timeout far above any bounded answer: reaching it is a hang, and fails the test.
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                n += 1
                route = ROUTES[n % len(ROUTES)]
                phase = self.phase
                try:
                    r = client.get(route.format(n=1 + n % 50))
                except httpx.HTTPError as exc:
                    self.answers.append(Answer(phase, route, None, {}, b"", f"{type(exc).__name__}: {exc}"))
                    continue
                self.answers.append(
                    Answer(phase, route, r.status_code, dict(r.headers), r.content, None, self.phase)
                )
                time.sleep(0.02)

    def seen(self, phase: str, route: str, status: int) -> int:
        return sum(
            1 for a in list(self.answers) if a.phase == phase and a.route == route and a.status == status
        )


def _scalar(url: str, sql: str) -> Any:
    engine = make_engine(Settings(database_url=url))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Run:
    """A worker and an API process on a PostgreSQL of the test's own, under a client loop."""

    url: str
    base: str
    outlets: Outlets
    worker: Process
    load: Load
    newest: Any = None
    worker_code: int | None = None
    api_code: int | None = None
    expected: int = SOURCES * ITEMS_AT_EPOCH[3]


@contextmanager
def _serving(own_pg: PostgresServer, **settings: str) -> Iterator[Run]:
    """Start a worker and a ``serve --no-scheduler`` process polling SOURCES loopback outlets and
    yield once the first items are in stories and every route has answered; the test then breaks
    the database, mends it and sets ``load.phase = "back"`` with the outlets at epoch 3. On the way
    out: wait until the API serves again and every item published is in a story, read the newest
    page, stop both processes (thawing a frozen server first) and keep their exit codes."""
    url = own_pg.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    port = free_port()
    env = dict(
        os.environ,
        BABELWIRE_DATABASE_URL=url,
        BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
        BABELWIRE_TICK_S="0.3",
        BABELWIRE_MIN_INTERVAL_S="1",
        BABELWIRE_LEASE_S="10",
        **settings,
    )
    outlets = Outlets()
    base = f"http://127.0.0.1:{port}"
    with FeedServer() as site:
        for n in range(SOURCES):
            site.routes[f"/outlet/{n}.xml"] = outlets.route(n)
        add_sources(
            engine,
            [
                SourceSpec(url=site.url(f"/outlet/{n}.xml"), outlet="coindesk", locale="en", title=None)
                for n in range(SOURCES)
            ],
        )
        engine.dispose()
        worker = Process(["worker"], env)
        api = Process(["serve", "--no-scheduler", "--port", str(port)], env)
        run: Run | None = None
        try:
            api.wait_for(lambda line: "Uvicorn running" in line)
            with Load(base) as load:
                run = Run(url, base, outlets, worker, load)
                wait_until(
                    lambda: (
                        _scalar(url, "SELECT count(*) FROM item WHERE story_id IS NOT NULL")
                        == SOURCES * ITEMS_AT_EPOCH[1]
                    ),
                    "the first items in stories",
                )
                wait_until(lambda: all(load.seen("up", r, 200) for r in ROUTES), "the API's first pages")
                yield run
                wait_until(lambda: all(load.seen("back", r, 200) for r in ROUTES), "the API serving again")
                wait_until(
                    lambda: (
                        _scalar(url, "SELECT count(*) FROM item WHERE story_id IS NOT NULL") == run.expected
                    ),
                    "every item published meanwhile, in a story",
                )
            run.newest = httpx.get(f"{base}/v1/feed", params={"locale": "en", "limit": 100}).json()
        finally:
            if own_pg.frozen:
                own_pg.thaw()
            worker_code, api_code = worker.stop(), api.stop()
            if run is not None:
                run.worker_code, run.api_code = worker_code, api_code
        _assert_outcome(run, api)


def test_api_and_worker_ride_out_a_postgresql_restart(own_pg: PostgresServer) -> None:
    with _serving(
        own_pg,
        BABELWIRE_RESPONSE_CACHE_S="0",
        BABELWIRE_DB_CONNECT_TIMEOUT_S="3",
        BABELWIRE_DB_STATEMENT_TIMEOUT_S="5",
    ) as run:
        own_pg.stop_server("fast")
        run.load.phase = "down"
        run.outlets.epoch = 2  # outlets publish while the database is down
        wait_until(lambda: all(run.load.seen("down", r, 503) >= 3 for r in ROUTES), "503s while down", 60)
        wait_until(lambda: "database unavailable" in run.worker.stderr, "the worker noticing", 60)
        with httpx.Client(base_url=run.base, timeout=30) as client:
            ready = client.get("/readyz")

        run.load.phase = "restarting"  # answers asked from here on may come from either side
        own_pg.start_server()
        run.load.phase = "back"
        run.outlets.epoch = 3

    assert ready.status_code == 503 and ready.headers["retry-after"].isdigit()
    assert ready.json()["error"]["code"] == "database_unavailable"
    _assert_answers(run.load.answers, "down")


def _assert_answers(answers: list[Answer], outage: str) -> None:
    """Every answer 200 or 503 (never a hang or a dropped connection); every 503 in the route's
    format, with Retry-After and no-store; nothing but 503s while the database was out."""
    assert [a.failure for a in answers if a.failure] == []  # no hang, no dropped connection
    assert {a.status for a in answers} <= {200, 503}, {a.status for a in answers}
    for a in answers:
        if a.status != 503:
            continue
        assert a.headers["retry-after"].isdigit() and a.headers["cache-control"] == "no-store"
        if "rss" in a.route:
            assert a.headers["content-type"].startswith("application/xml")
            assert b"<error><code>database_unavailable</code>" in a.body, a.body
        else:
            assert a.headers["content-type"] == "application/json"
            assert httpx.Response(503, content=a.body).json()["error"]["code"] == "database_unavailable"
    assert [
        (a.route, a.status, a.body[:200]) for a in answers if a.phase == a.until == outage and a.status != 503
    ] == []


def _assert_outcome(run: Run | None, api: Process) -> None:
    """Both processes stopped cleanly without a traceback; every item published stored once, in a
    story; no lease left; the API serves the newest items."""
    assert run is not None
    assert run.worker_code == 0 and run.api_code == 0
    for process in (run.worker, api):
        assert "Traceback" not in process.stderr, process.stderr
    url, expected = run.url, run.expected
    assert _scalar(url, "SELECT count(*) FROM item") == expected
    assert _scalar(url, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0
    assert _scalar(url, "SELECT count(DISTINCT (source_id, guid)) FROM item") == expected
    assert _scalar(url, "SELECT count(*) FROM source WHERE lease_owner IS NOT NULL") == 0
    titles = {entry["title"] for entry in run.newest["items"]}
    assert f"Outlet 0 bulletin {ITEMS_AT_EPOCH[3] - 1}: token T0X6 listed" in titles


def test_api_and_worker_ride_out_a_frozen_postgresql(own_pg: PostgresServer) -> None:
    """The whole server stopped with SIGSTOP: it accepts connections and never answers, so the
    server's own statement timeout never runs. The API still answers every request (503 in its
    format, within its answer bound), stays live (``/healthz`` is not stuck behind a database read
    on the event loop), the worker logs the failed rounds and goes on ticking; after SIGCONT both
    carry on and nothing is lost or stored twice."""
    with _serving(
        own_pg,
        BABELWIRE_DB_CONNECT_TIMEOUT_S="2",
        BABELWIRE_DB_STATEMENT_TIMEOUT_S="4",  # the API waits for an answer 4 + 5 s at most
        BABELWIRE_DB_ANSWER_TIMEOUT_S="6",  # the worker
    ) as run:
        load, worker = run.load, run.worker
        failed_rounds = worker.stderr.count("database unavailable")

        own_pg.freeze()
        load.phase = "freezing"  # a cached page may still be answered until the next generation read
        run.outlets.epoch = 2
        time.sleep(1.0)
        load.phase = "frozen"
        wait_until(lambda: all(load.seen("frozen", r, 503) >= 2 for r in ROUTES), "503s while frozen", 120)
        wait_until(
            lambda: worker.stderr.count("database unavailable") >= failed_rounds + 2,
            "the worker failing rounds and ticking on",
            60,
        )
        # Liveness never waits for the database: a timeout far below the answer bound (9 s).
        with httpx.Client(base_url=run.base, timeout=5) as client:
            alive = [client.get("/healthz").status_code for _ in range(5)]

        load.phase = "thawing"
        own_pg.thaw()
        load.phase = "back"
        run.outlets.epoch = 3

    assert alive == [200] * 5
    _assert_answers(run.load.answers, "frozen")
    assert "no answer within" in worker.stderr or "timeout expired" in worker.stderr, worker.stderr[-3000:]

"""Two real `main.py worker` processes share PostgreSQL's source table without double polling."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.pgserver import PostgresServer
from tests.processes import Process

FEED = (Path(__file__).parent / "fixtures" / "e2e" / "coindesk-en.xml").read_bytes()


def test_two_workers_poll_each_source_once(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    with FeedServer() as server:
        paths = [f"/feed/{i}.xml" for i in range(12)]
        for p in paths:
            server.routes[p] = Response(
                body=FEED.replace(b"cd-10", p.encode()),
                headers={"Content-Type": "application/rss+xml"},
                delay_s=0.2,
            )
        add_sources(
            engine, [SourceSpec(url=server.url(p), outlet="coindesk", locale="en", title=None) for p in paths]
        )
        env = dict(
            os.environ,
            BABELWIRE_DATABASE_URL=url,
            BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
            BABELWIRE_TICK_S="0.3",
            BABELWIRE_FETCH_CONCURRENCY="2",
        )
        workers = [Process(["worker"], env) for _ in range(2)]
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and sum(server.hits.get(p, 0) for p in paths) < len(paths):
                time.sleep(0.2)
            time.sleep(2.0)  # several more ticks of both workers: nothing is due again yet
        finally:
            codes = [w.stop() for w in workers]
            errs = [w.stderr for w in workers]
        assert [server.hits.get(p, 0) for p in paths] == [1] * len(paths), errs
        assert codes == [0, 0], errs
        assert all("Traceback" not in e for e in errs), errs
    with engine.connect() as conn:
        import sqlalchemy as sa

        n = conn.execute(sa.text("SELECT count(*) FROM item")).scalar_one()
        leased = conn.execute(
            sa.text("SELECT count(*) FROM source WHERE lease_owner IS NOT NULL")
        ).scalar_one()
    assert n == 12 * 3 and leased == 0
    engine.dispose()


def _ignore_sigint() -> None:
    """What a shell does to a command it starts in the background."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_worker_stops_cleanly_on_sigint_or_sigterm(tmp_path: Path, signum: signal.Signals) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    with FeedServer() as server:
        server.routes["/feed.xml"] = Response(body=FEED, headers={"Content-Type": "application/rss+xml"})
        add_sources(
            engine, [SourceSpec(url=server.url("/feed.xml"), outlet="coindesk", locale="en", title=None)]
        )
        env = dict(
            os.environ, BABELWIRE_DATABASE_URL=url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1", BABELWIRE_TICK_S="0.3"
        )
        # Started with SIGINT ignored, as from `cmd &` in a script: the worker must still stop.
        worker = Process(["worker"], env, preexec_fn=_ignore_sigint)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not server.hits.get("/feed.xml"):
            time.sleep(0.2)
        time.sleep(1.0)
        code = worker.stop(signum=signum)
        err = worker.stderr
    assert code == 0, err
    assert "stopping" in err and "Traceback" not in err, err
    with engine.connect() as conn:
        import sqlalchemy as sa

        leased = conn.execute(
            sa.text("SELECT count(*) FROM source WHERE lease_owner IS NOT NULL")
        ).scalar_one()
        items = conn.execute(sa.text("SELECT count(*) FROM item")).scalar_one()
    assert leased == 0 and items == 3
    engine.dispose()

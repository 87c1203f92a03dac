"""``main.py serve`` keeps dedupe out of the process that answers requests: its scheduler runs in a
child process, started with it and stopped with it (SIGTERM or SIGINT), never left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response
from tests.livesite import free_port
from tests.processes import Process, alive, children_of

FIXTURES = Path(__file__).parent / "fixtures" / "e2e"
FEEDS = {
    "coindesk-en.xml": ("coindesk", "en"),
    "coinpost-ja.xml": ("coinpost", "ja"),
    "gate-pt-PT.xml": ("gate", "pt-PT"),
}
KERNEL = "aggregator/dedupe/_index"
"""Part of the path of dedupe's compiled blocking index: mapped by a process once it dedupes."""


def maps_kernel(pid: int) -> bool:
    return KERNEL in Path(f"/proc/{pid}/maps").read_text()


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_dedupes_in_its_scheduler_process_and_stops_it(tmp_path: Path, signum: signal.Signals) -> None:
    url = f"sqlite:///{tmp_path}/babelwire.sqlite"
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    port = free_port()
    env = dict(
        os.environ, BABELWIRE_DATABASE_URL=url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1", BABELWIRE_TICK_S="0.5"
    )
    with FeedServer() as site:
        specs = []
        for name, (outlet, locale) in FEEDS.items():
            site.routes[f"/{name}"] = Response(
                body=(FIXTURES / name).read_bytes(), headers={"Content-Type": "application/rss+xml"}
            )
            specs.append(SourceSpec(url=site.url(f"/{name}"), outlet=outlet, locale=locale, title=None))
        add_sources(engine, specs)
        api = Process(["serve", "--port", str(port)], env)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                count(engine, "SELECT count(*) FROM item")
                and not count(engine, "SELECT count(*) FROM item WHERE story_id IS NULL")
            ):
                time.sleep(0.2)
            assert count(engine, "SELECT count(*) FROM item WHERE story_id IS NULL") == 0, api.stderr
            assert count(engine, "SELECT count(*) FROM story") > 0, api.stderr
            feed = httpx.get(f"http://127.0.0.1:{port}/v1/feed?locale=en", timeout=30)
            assert feed.status_code == 200 and feed.json()["items"], feed.text
            dedupers = [pid for pid in children_of(api.pid) if alive(pid) and maps_kernel(pid)]
            # Dedupe ran in exactly one child of the API process, never in the API process itself.
            assert len(dedupers) == 1, (children_of(api.pid), api.stderr)
            assert not maps_kernel(api.pid)
            scheduler = dedupers[0]
        finally:
            code = api.stop(signum=signum)
    # uvicorn shuts down cleanly, then re-raises the signal it caught: exit by that signal
    assert code in (0, -signum), api.stderr
    assert "Application shutdown complete" in api.stderr and "Traceback" not in api.stderr, api.stderr
    assert "babelwire.scheduler: stopping" in api.stderr, api.stderr
    assert not alive(scheduler), subprocess.run(["ps", "-ef"], capture_output=True, text=True).stdout
    engine.dispose()


def test_the_scheduler_process_stops_when_serve_is_killed(tmp_path: Path) -> None:
    """No orphan: with the API process killed outright (no handler runs), its scheduler stops by itself."""
    url = f"sqlite:///{tmp_path}/babelwire.sqlite"
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    env = dict(os.environ, BABELWIRE_DATABASE_URL=url, BABELWIRE_TICK_S="0.5")
    api = Process(["serve", "--port", str(free_port())], env)
    try:
        api.wait_for(lambda line: "scheduler started in process" in line)
        deadline = time.monotonic() + 60
        scheduler = None
        while time.monotonic() < deadline and scheduler is None:
            found = [
                pid
                for pid in children_of(api.pid)
                if "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                and "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
            ]
            scheduler = found[0] if found else None
            time.sleep(0.1)
        assert scheduler is not None, api.stderr
    finally:
        api.proc.kill()
        api.proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(scheduler):
        time.sleep(0.2)
    assert not alive(scheduler), api.stderr
    engine.dispose()

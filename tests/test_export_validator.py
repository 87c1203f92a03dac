"""The W3C Feed Validator (offline copy in ../shared/tools/feedvalidator) on the RSS and Atom
re-export of the demo outlets, for every locale: no errors. Warnings are printed (``pytest -s``
or ``-rA`` shows them); those a reader would notice were fixed in the writers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregator import LOCALES
from aggregator.db import make_engine
from aggregator.dedupe.run import run_dedupe
from aggregator.migrate import upgrade
from aggregator.poll import poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.demo import DemoFeedServer
from tests.test_export_readers import serving

pytestmark = pytest.mark.shared
VALIDATOR = Path(__file__).resolve().parents[2] / "shared" / "tools" / "feedvalidator" / "validate.py"


@pytest.fixture(scope="module")
def demo_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo outlets polled and deduplicated into SQLite, the API serving them on loopback."""
    assert VALIDATOR.exists(), f"{VALIDATOR} is missing: these tests need ../shared beside the clone"
    path: Path = tmp_path_factory.mktemp("validator")
    settings = Settings(
        database_url=f"sqlite:///{path}/demo.sqlite",
        allow_private_feeds=True,
        websub_hub="https://hub.example/",
    )
    engine: sa.Engine = make_engine(settings)
    upgrade(engine)
    with DemoFeedServer() as demo:
        add_sources(engine, demo.sources())
        report = asyncio.run(poll_round(engine, settings))
    assert report.inserted > 0 and report.errors == 0
    run_dedupe(engine)
    with serving(settings, engine) as base:
        yield base
    engine.dispose()


@pytest.mark.parametrize("fmt", ["rss", "atom"])
@pytest.mark.parametrize("locale", LOCALES)
def test_w3c_validator_finds_no_errors(demo_api: str, locale: str, fmt: str) -> None:
    url = f"{demo_api}/v1/feed.{fmt}?locale={locale}&limit=50"
    r = subprocess.run(
        [sys.executable, str(VALIDATOR), url, "--json", "--level", "warning"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode in (0, 1), r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    for event in events:
        print(f"{locale} {fmt}: {event}")
    assert not [e for e in events if e.get("level") == "error"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 error(s)" in r.stderr

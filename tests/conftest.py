"""Shared fixtures: a fresh migrated database per test, on SQLite and on a real PostgreSQL.

``db_url`` / ``engine`` are parametrized over both backends, so every test that uses them runs
twice. PostgreSQL is a throwaway server started for the session (tests/pgserver.py); if it cannot
start the tests fail loudly — they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.settings import Settings
from tests.pgserver import PostgresServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/babelwire.sqlite"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, allow_private_feeds=True)


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    """A migrated, empty database (through the real Alembic migrations)."""
    eng = make_engine(settings)
    upgrade(eng)
    yield eng
    eng.dispose()

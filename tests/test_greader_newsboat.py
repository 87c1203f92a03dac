"""newsboat (Debian's 2.21) reads babelwire as its Google Reader server, in its ``feedhq`` mode,
against the API served by uvicorn on loopback over stories the real pipeline made from the
editorial fixture feeds (four outlets, five locales, translations merged into stories).

newsboat 2.21 logs in, lists subscriptions and reads each one as Atom from ``/reader/atom/feed%2F<n>``;
its cache (``rss_item`` in its SQLite file) must hold each story once, its unread count must be the
key's stories, and a story marked read through ``edit-tag`` (the request newsboat sends) must be
read in another newsboat's next sync and in this one's.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from aggregator.editorial import CLI
from aggregator.editorial.keys import create_key
from aggregator.registry import add_sources
from aggregator.settings import Settings
from api.app import create_app
from api.greader.ids import long_id
from sources.opml import SourceSpec
from tests import livesite
from tests.feedserver import FeedServer, Response
from tests.newsroom import open_newsroom
from tests.test_api import SEEDS
from tests.test_pipeline import FIXTURES as PIPELINE_FIXTURES
from tests.test_pipeline import GOOD


class Newsboat:
    """newsboat with its own config, cache and home: ``-x reload print-unread`` in feedhq mode."""

    def __init__(self, home: Path, url: str, login: str, password: str) -> None:
        assert shutil.which("newsboat"), "newsboat is missing: `make feedtools` installs it"
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        (home / "urls").write_text("")
        (home / "config").write_text(
            'urls-source "feedhq"\n'
            f'feedhq-url "{url}"\n'
            f'feedhq-login "{login}"\n'
            f'feedhq-password "{password}"\n'
            "feedhq-min-items 1000\n"
            "feedhq-show-special-feeds no\n"
        )

    def unread(self) -> int:
        env = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C",
        }
        cmd = ["newsboat", "-u", "urls", "-c", "cache.db", "-C", "config", "-x", "reload", "print-unread"]
        r = subprocess.run(
            cmd, cwd=self.home, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        assert r.returncode == 0, r.stdout + r.stderr
        found = re.search(r"(\d+) unread articles", r.stdout)
        assert found, r.stdout + r.stderr
        return int(found.group(1))

    def cached(self) -> list[tuple[str, int]]:
        """(guid, unread) of every row of its cache."""
        with closing(sqlite3.connect(self.home / "cache.db")) as db:
            return [(g, int(u)) for g, u in db.execute("SELECT guid, unread FROM rss_item")]


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


def test_newsboat_reads_each_story_once_and_syncs_read_state(
    engine: sa.Engine, settings: Settings, feeds: FeedServer, tmp_path: Path
) -> None:
    room = open_newsroom(engine, settings, feeds)
    specs = []
    for path in ("/coindesk/en.xml", "/coinpost/ja.xml"):
        outlet, locale, name, ctype = GOOD[path]
        feeds.routes[path] = Response(
            body=(PIPELINE_FIXTURES / name).read_bytes(), headers={"Content-Type": ctype}
        )
        specs.append(SourceSpec(url=feeds.url(path), outlet=outlet, locale=locale, title=None))
    add_sources(engine, specs)
    room.poll()
    with Session(engine) as s:
        key = create_key(s, CLI, "reader", "alice", "pt-PT")[1]
        s.commit()
    app = create_app(settings, engine, seed_disclaimers=SEEDS, response_cache_s=0)
    with livesite.serving(app) as base, httpx.Client(base_url=base) as client:
        served: list[int] = []
        page = client.get("/v1/feed", params={"locale": "pt-PT", "limit": 100}).json()
        assert page["next_cursor"] is None
        served = [e["id"] for e in page["items"]]
        assert len(served) >= 5

        first = Newsboat(tmp_path / "one", f"{base}/greader", "alice", key)
        assert first.unread() == len(served)
        rows = first.cached()
        assert sorted(g for g, _ in rows) == sorted(long_id(sid) for sid in served)  # each story once
        assert first.unread() == len(served)  # a second reload (conditional GETs) changes nothing
        assert len(first.cached()) == len(served)

        # What newsboat sends when a story is read: a raw, unescaped form body.
        login = client.post("/greader/accounts/ClientLogin", data={"Email": "alice", "Passwd": key})
        auth = {"Authorization": "GoogleLogin auth=" + re.search(r"^Auth=(.*)$", login.text, re.M).group(1)}  # type: ignore[union-attr]
        token = client.get("/greader/reader/api/0/token", headers=auth).text
        guid = long_id(served[0])
        body = (
            f"i={guid}&a=user/-/state/com.google/read&r=user/-/state/com.google/kept-unread&ac=edit&T={token}"
        )
        r = client.post(
            "/greader/reader/api/0/edit-tag",
            content=body,
            headers=auth | {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200 and r.content == b"OK"

        # Another client's next sync (a second newsboat, its URL with a trailing slash: //accounts/…).
        second = Newsboat(tmp_path / "two", f"{base}/greader/", "alice", key)
        assert second.unread() == len(served) - 1
        assert dict(second.cached())[guid] == 0
        # And this one's.
        assert first.unread() == len(served) - 1
        assert dict(first.cached())[guid] == 0
        assert len(first.cached()) == len(served)

        # Wrong password: newsboat says so and fails.
        bad = Newsboat(tmp_path / "bad", f"{base}/greader", "alice", key + "x")
        with pytest.raises(AssertionError, match="Authentication failed"):
            bad.unread()

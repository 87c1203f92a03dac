"""The CLI contract (DESIGN.md), run as a real subprocess against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.feedserver import FeedServer, Response

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "e2e"


def run(db_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, BABELWIRE_DATABASE_URL=db_url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        s.routes["/coindesk/en.xml"] = Response(
            body=(FIXTURES / "coindesk-en.xml").read_bytes(), headers={"Content-Type": "application/rss+xml"}
        )
        s.routes["/gate/pt-PT.xml"] = Response(
            body=(FIXTURES / "gate-pt-PT.xml").read_bytes(), headers={"Content-Type": "application/atom+xml"}
        )
        s.routes["/broken.xml"] = Response(500, b"down")
        yield s


def opml(server: FeedServer, extra: str = "") -> str:
    return f"""<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>
<outline text="CoinDesk" type="rss" xmlUrl="{server.url("/coindesk/en.xml")}" language="en" outlet="coindesk"/>
<outline text="Gate" type="rss" xmlUrl="{server.url("/gate/pt-PT.xml")}" language="pt-PT" outlet="gate"/>
<outline text="Broken" type="rss" xmlUrl="{server.url("/broken.xml")}" language="ru" outlet="forklog"/>
{extra}</body></opml>"""


def test_full_cli_round(db_url: str, server: FeedServer, tmp_path: Path) -> None:
    assert run(db_url, "migrate").returncode == 0
    (tmp_path / "s.opml").write_text(opml(server))
    r = run(db_url, "sources", "import", str(tmp_path / "s.opml"))
    assert r.returncode == 0, r.stderr
    assert "imported 3" in r.stdout
    r = run(db_url, "poll", "--once")
    assert r.returncode == 0, r.stderr  # a broken feed is not a broken installation
    assert "polled 3 sources" in r.stdout and "5 new items" in r.stdout and "1 errors" in r.stdout
    assert "[3/3]" in r.stderr  # progress lines
    first = run(db_url, "stories", "export", "--format", "jsonl")
    assert first.returncode == 0
    stories = [json.loads(line) for line in first.stdout.splitlines()]
    members = [m for s in stories for m in s["members"]]
    assert len(members) == 5
    for s in stories:
        assert {"id", "canonical_url", "locales", "members", "related"} <= s.keys()
        for m in s["members"]:
            assert {"url", "locale", "source", "title", "published_at"} <= m.keys()
    assert run(db_url, "poll", "--once").returncode == 0
    second = run(db_url, "stories", "export", "--format", "jsonl")
    assert sorted(first.stdout.splitlines()) == sorted(second.stdout.splitlines())
    listed = run(db_url, "sources", "list")
    assert listed.returncode == 0 and "errors=1" in listed.stdout and listed.stdout.count("\n") == 3
    exported = run(db_url, "sources", "export")
    assert exported.returncode == 0 and exported.stdout.count("xmlUrl=") == 3


def test_bad_opml_imports_nothing(db_url: str, server: FeedServer, tmp_path: Path) -> None:
    assert run(db_url, "migrate").returncode == 0
    bad = opml(server, '<outline text="Bad" type="rss" xmlUrl="http://x.example/f" language="pt-XX"/>')
    (tmp_path / "bad.opml").write_text(bad)
    r = run(db_url, "sources", "import", str(tmp_path / "bad.opml"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "pt-XX" in r.stderr and "Traceback" not in r.stderr
    assert run(db_url, "sources", "list").stdout == ""
    (tmp_path / "garbage.opml").write_text("not xml at all <<<")
    r = run(db_url, "sources", "import", str(tmp_path / "garbage.opml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run(db_url, "sources", "import", str(tmp_path / "missing.opml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_sources_add_validates(db_url: str) -> None:
    assert run(db_url, "migrate").returncode == 0
    r = run(db_url, "sources", "add", "https://www.gate.com/pt/rss", "--outlet", "gate", "--locale", "pt")
    assert r.returncode == 2 and "unknown locale" in r.stderr
    r = run(db_url, "sources", "add", "ftp://x/feed", "--outlet", "gate", "--locale", "pt-PT")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run(db_url, "sources", "add", "https://www.gate.com/pt/rss", "--outlet", "gate", "--locale", "pt-PT")
    assert r.returncode == 0
    again = run(
        db_url, "sources", "add", "https://www.gate.com/pt/rss", "--outlet", "gate", "--locale", "pt-PT"
    )
    assert again.returncode == 0 and "already present" in again.stdout


def test_unmigrated_database_and_bad_settings_are_clear(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.sqlite"
    r = run(url, "stories", "export", "--format", "jsonl")
    assert r.returncode == 2 and "migrate" in r.stderr and "Traceback" not in r.stderr
    r = run("mysql://nope", "migrate")
    assert r.returncode == 2 and "BABELWIRE_DATABASE_URL" in r.stderr and "Traceback" not in r.stderr
    r = run(url, "migrate", env={"BABELWIRE_MAX_BODY_BYTES": "lots"})
    assert r.returncode == 2 and "BABELWIRE_MAX_BODY_BYTES" in r.stderr

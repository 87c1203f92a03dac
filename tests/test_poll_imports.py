"""A poll that finds every feed unchanged (all 304) imports only what it needs: not the dedupe
package, not SQLModel or the ORM, not the parser, not pydantic-settings, not multiprocessing. Checked in the real
command's process (``main.py poll --once``, over loopback), by what sits in ``sys.modules`` when
it ends — never by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.feedserver import FeedServer, Response

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "e2e"

HEAVY = (
    "aggregator.dedupe",
    "aggregator.models",
    "aggregator.entries",
    "aggregator.normalize",
    "aggregator.parse",
    "sqlmodel",
    "sqlalchemy.orm",
    "pydantic_settings",
    "feedparser",
    "multiprocessing",  # the parse pool starts with the first body to parse
    "concurrent.futures.process",
    "aggregator.procpool",
)

# Runs main.py as `python main.py …` would, then prints which of HEAVY it imported (stdout's last line).
RUNNER = """
import json, runpy, sys
heavy = json.loads(sys.argv[1])
sys.argv = ["main.py", *sys.argv[2:]]
code = 0
try:
    runpy.run_path("main.py", run_name="__main__")
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "imported": sorted(m for m in heavy if m in sys.modules)}))
"""


def poll(db_url: str) -> tuple[str, dict[str, Any]]:
    env = dict(os.environ, BABELWIRE_DATABASE_URL=db_url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1")
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(HEAVY), "poll", "--once", "--all", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    *lines, last = r.stdout.splitlines()
    return "\n".join(lines), json.loads(last)


def cli(db_url: str, *args: str) -> None:
    env = dict(os.environ, BABELWIRE_DATABASE_URL=db_url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1")
    r = subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr


def test_an_all_304_poll_imports_neither_dedupe_nor_the_orm(db_url: str, tmp_path: Path) -> None:
    with FeedServer() as server:
        server.routes["/coindesk/en.xml"] = Response(
            body=(FIXTURES / "coindesk-en.xml").read_bytes(), headers={"Content-Type": "application/rss+xml"}
        )
        server.routes["/gate/pt-PT.xml"] = Response(
            body=(FIXTURES / "gate-pt-PT.xml").read_bytes(), headers={"Content-Type": "application/atom+xml"}
        )
        opml = tmp_path / "s.opml"
        opml.write_text(
            f"""<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>
<outline text="CoinDesk" type="rss" xmlUrl="{server.url("/coindesk/en.xml")}" language="en" outlet="coindesk"/>
<outline text="Gate" type="rss" xmlUrl="{server.url("/gate/pt-PT.xml")}" language="pt-PT" outlet="gate"/>
</body></opml>"""
        )
        cli(db_url, "migrate")
        cli(db_url, "sources", "import", str(opml))

        out, first = poll(db_url)
        # New items: parsed, stored and deduped — the same check sees those imports when they happen.
        assert "5 new items" in out and "0 not modified" in out, out
        assert {"aggregator.dedupe", "aggregator.parse", "feedparser"} <= set(first["imported"]), first

        out, second = poll(db_url)
        assert "0 new items" in out and "2 not modified" in out and "dedupe: nothing new" in out, out
        assert second == {"code": 0, "imported": []}, second

"""A small newsroom for the editorial tests: fixture feeds (``fixtures/editorial``) on loopback,
polled and deduped into a real database, an app over it, and one API key per role."""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, col, select
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from aggregator.db import session_scope
from aggregator.dedupe.run import run_dedupe
from aggregator.editorial import CLI
from aggregator.editorial.keys import create_key
from aggregator.entries import refresh_story_entries
from aggregator.models import Item
from aggregator.poll import poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response

FIXTURES = Path(__file__).parent / "fixtures" / "editorial"
FEEDS = {
    "/wire/en.xml": ("wire", "en", "wire-en.xml", "application/rss+xml"),
    "/gate/pt-PT.xml": ("gate", "pt-PT", "gate-pt-PT.xml", "application/atom+xml"),
    "/gate/ja.xml": ("gate", "ja", "gate-ja.xml", "application/atom+xml"),
    "/mirror/es.xml": ("mirror", "es", "mirror-es.xml", "application/rss+xml"),
}
LUMEN_EN = "https://wire.example/en/harbor-lists-lumen"
LUMEN_PT = "https://gate.example/pt/news/detail/7001"
LUMEN_JA = "https://gate.example/ja/news/detail/7001"
RIDGE_EN = "https://wire.example/en/ridge-custody"
LUMEN_ES = "https://mirror.example/es/harbor-lumen"
"""Merged on shared figures and names alone (no declared link): a review queue entry."""
FOUNDATION_ES = "https://mirror.example/es/lumen-fundacion"
"""An independent report on the same event: related to the Lumen story."""


@dataclass
class Newsroom:
    engine: sa.Engine
    settings: Settings
    server: FeedServer
    keys: dict[str, str] = field(default_factory=dict)

    def serve(self, path: str, body: bytes) -> None:
        self.server.routes[path] = Response(body=body, headers={"Content-Type": FEEDS[path][3]})

    def poll(self) -> None:
        asyncio.run(poll_round(self.engine, self.settings, all_sources=True))
        run_dedupe(self.engine)

    def story_of(self, link: str) -> int:
        with Session(self.engine) as s:
            item = s.exec(select(Item).where(Item.link == link)).one()
            assert item.story_id is not None
            return item.story_id

    def members(self, story_id: int) -> set[str]:
        with Session(self.engine) as s:
            return {i.link or "" for i in s.exec(select(Item).where(col(Item.story_id) == story_id)).all()}

    def redo_dedupe(self) -> None:
        """Forget every story and run dedupe again from scratch (editors' overrides stay)."""
        with self.engine.begin() as c:
            gone = [r[0] for r in c.execute(sa.text("SELECT id FROM story"))]
            c.execute(sa.text("UPDATE item SET story_id = NULL"))
            for table in ("mergedecision", "relatedstory", "feedchange", "story"):
                c.execute(sa.text(f"DELETE FROM {table}"))
            refresh_story_entries(c, gone)  # like any writer: the dropped stories leave the feed
        run_dedupe(self.engine)

    def client(self, **kw: object) -> TestClient:
        from api.app import create_app

        return TestClient(create_app(self.settings, self.engine, **kw), raise_server_exceptions=False)  # type: ignore[arg-type]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


def open_newsroom(engine: sa.Engine, settings: Settings, server: FeedServer) -> Newsroom:
    room = Newsroom(engine, settings, server)
    specs = []
    for path, (outlet, locale, name, _) in FEEDS.items():
        room.serve(path, (FIXTURES / name).read_bytes())
        specs.append(SourceSpec(url=server.url(path), outlet=outlet, locale=locale, title=None))
    add_sources(engine, specs)
    room.poll()
    with session_scope(engine) as s:
        for role in ("reader", "editor", "admin"):
            room.keys[role] = create_key(s, CLI, role, f"{role}-alice")[1]
    return room

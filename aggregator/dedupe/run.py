"""Dedupe over the database (placeholder until the clustering lands: one story per item)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import select

from aggregator.db import session_scope
from aggregator.models import FeedChange, Item, MergeDecision, Story


@dataclass
class DedupeReport:
    items: int = 0
    new_stories: int = 0
    merged: int = 0
    related_links: int = 0


def run_dedupe(engine: sa.Engine) -> DedupeReport:
    """Give every item without a story a story of its own."""
    report = DedupeReport()
    with session_scope(engine) as session:
        items = session.exec(
            select(Item).where(Item.story_id.is_(None)).order_by(Item.published_at, Item.id)  # type: ignore[union-attr]
        ).all()
        for item in items:
            story = Story(
                canonical_item_id=item.id, first_published_at=item.published_at, updated_at=item.fetched_at
            )
            session.add(story)
            session.flush()
            item.story_id = story.id
            assert item.id is not None and story.id is not None
            session.add(MergeDecision(item_id=item.id, story_id=story.id, kind="new"))
            session.add(FeedChange(story_id=story.id, change="upsert"))
            report.items += 1
            report.new_stories += 1
    return report

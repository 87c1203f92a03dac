"""``stories export --format jsonl``: one JSON object per story, streamed in id order."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.models import Item, RelatedStory, Source, Story

BATCH = 2000


def iter_stories(engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """Stories with members (original first, then by time) and related story ids."""
    last_id = 0
    with Session(engine) as session:
        while True:
            stories = session.exec(
                select(Story).where(Story.id > last_id).order_by(Story.id).limit(BATCH)  # type: ignore[arg-type,operator]
            ).all()
            if not stories:
                return
            ids = [s.id for s in stories]
            last_id = max(i for i in ids if i is not None)
            members: dict[int, list[tuple[Item, Source]]] = defaultdict(list)
            rows = session.exec(
                select(Item, Source)
                .join(Source, Item.source_id == Source.id)  # type: ignore[arg-type]
                .where(Item.story_id.in_(ids), Item.tombstone == False)  # type: ignore[union-attr]  # noqa: E712
                .order_by(Item.published_at, Item.id)  # type: ignore[arg-type]
            ).all()
            for item, source in rows:
                assert item.story_id is not None
                members[item.story_id].append((item, source))
            related: dict[int, set[int]] = defaultdict(set)
            for a, b in session.exec(
                select(RelatedStory.story_id, RelatedStory.related_id).where(
                    sa.or_(RelatedStory.story_id.in_(ids), RelatedStory.related_id.in_(ids))  # type: ignore[attr-defined]
                )
            ).all():
                related[a].add(b)
                related[b].add(a)
            for story in stories:
                assert story.id is not None
                found = members.get(story.id, [])
                if not found:
                    continue
                found.sort(key=lambda m: (m[0].id != story.canonical_item_id, m[0].published_at, m[0].id))
                canonical = found[0][0]
                yield {
                    "id": story.id,
                    "canonical_url": canonical.link,
                    "locales": sorted({src.locale for _, src in found}),
                    "members": [
                        {
                            "url": it.link,
                            "locale": src.locale,
                            "source": src.url,
                            "outlet": src.outlet_id,
                            "title": it.title,
                            "published_at": it.published_at.isoformat().replace("+00:00", "Z"),
                            "original": it.id == canonical.id,
                        }
                        for it, src in found
                    ],
                    "related": sorted(related.get(story.id, set())),
                }


def export_jsonl(engine: sa.Engine) -> Iterator[str]:
    for story in iter_stories(engine):
        yield json.dumps(story, ensure_ascii=False, sort_keys=True)

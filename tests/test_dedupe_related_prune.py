"""Related rows follow their evidence: when an editor moves the item that linked two stories, the
link moves with it (or goes), on a real database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.dedupe.run import run_dedupe
from aggregator.models import EditorialOverride, Item, RelatedStory
from tests.test_dedupe_run import ARTICLES, add_items, stories


def links(engine: sa.Engine) -> set[tuple[int, int]]:
    """Every related pair, after checking that its two linking items sit in the two stories."""
    with Session(engine) as s:
        holder = {i.id: i.story_id for i in s.exec(select(Item)).all()}
        rows = s.exec(select(RelatedStory)).all()
        for r in rows:
            assert {holder[i] for i in r.signals["items"]} == {r.story_id, r.related_id}
        return {(r.story_id, r.related_id) for r in rows}


def edit(engine: sa.Engine, action: str, item_link: str, other_link: str | None = None) -> None:
    with Session(engine) as s:
        s.add(EditorialOverride(actor="ed", action=action, item_link=item_link, other_link=other_link))
        s.commit()


def test_related_rows_follow_split_and_merge(engine: sa.Engine) -> None:
    add_items(engine, list(ARTICLES))
    run_dedupe(engine)
    got = stories(engine)
    story, other = got["https://coindesk.example/en/a1"], got["https://cointelegraph.example/en/b1"]
    assert links(engine) == {(min(story, other), max(story, other))}
    with Session(engine) as s:
        (row,) = s.exec(select(RelatedStory)).all()
        by_id = {i.id: i for i in s.exec(select(Item)).all()}
        (linking,) = [by_id[i].link or "" for i in row.signals["items"] if by_id[i].story_id == story]
    # The editor splits the item that made the link: the link goes with it.
    edit(engine, action="split", item_link=linking)
    run_dedupe(engine)
    split = stories(engine)[linking]
    assert split not in (story, other)
    assert links(engine) == {(min(split, other), max(split, other))}
    # Merged back: the split story is gone, and the link returns to the story that holds the item.
    keep = next(link for link in ARTICLES if link != linking and got[link] == story)
    edit(engine, action="merge", item_link=linking, other_link=keep)
    run_dedupe(engine)
    back = stories(engine)[linking]
    assert links(engine) == {(min(back, other), max(back, other))}

"""run_dedupe on a real migrated database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.dedupe.cluster import ASSIGNMENT_KINDS
from aggregator.dedupe.run import run_dedupe
from aggregator.models import (
    EditorialOverride,
    FeedChange,
    Item,
    MergeDecision,
    Outlet,
    RelatedStory,
    Source,
    Story,
)

T0 = datetime(2025, 3, 14, 8, 30, tzinfo=UTC)

ARTICLES = {
    # link: (outlet, locale, minutes, title, body, links)
    "https://coindesk.example/en/a1": (
        "coindesk",
        "en",
        0,
        "Spot bitcoin ETFs pull in $1.2 billion in a single day",
        "US spot bitcoin ETFs took in $1.2 billion on Thursday.\nBlackRock's fund took $640 million. BTC traded near $84,500.",
        {},
    ),
    "https://gate.example/pt/a1": (
        "gate",
        "pt-PT",
        40,
        "ETF de bitcoin à vista atraem 1,2 mil milhões de dólares",
        "Os ETF registaram entradas de 1,2 mil milhões de dólares na quinta-feira.\n"
        "O fundo da BlackRock respondeu por 640 milhões de dólares. O BTC negociava perto de 84.500 dólares.\n"
        "Este artigo foi publicado originalmente no CoinDesk.",
        {},
    ),
    "https://gate.example/ja/a1": (
        "gate",
        "ja",
        55,
        "米国の現物ビットコインETF、1日で12億ドルの資金流入",
        "米国の現物ビットコインETFには木曜日、12億ドルが流入した。\nブラックロックのファンドが6億4000万ドルを占めた。BTCは8万4500ドル付近。",
        {"original": "https://coindesk.example/en/a1"},
    ),
    "https://cointelegraph.example/en/b1": (
        "cointelegraph",
        "en",
        90,
        "Bitcoin ETFs log $1.2 billion day as Ether funds bleed $95 million",
        "Ether ETFs saw $95 million leave on Thursday while bitcoin funds added $1.2 billion.\n"
        "Fidelity's fund led with $310 million, and BTC briefly touched $86,100 before easing.",
        {},
    ),
}


def add_items(engine: sa.Engine, links: list[str]) -> None:
    with Session(engine) as s:
        for outlet in ("coindesk", "gate", "cointelegraph"):
            if s.get(Outlet, outlet) is None:
                s.add(Outlet(id=outlet, name=outlet.title()))
        s.flush()
        for link in links:
            outlet, locale, minutes, title, body, extra = ARTICLES[link]
            url = f"https://{outlet}.example/{locale}.xml"
            source = s.exec(select(Source).where(Source.url == url)).first()
            if source is None:
                source = Source(url=url, outlet_id=outlet, locale=locale)
                s.add(source)
                s.flush()
            assert source.id is not None
            s.add(
                Item(
                    source_id=source.id,
                    identity=hashlib.sha256(link.encode()).hexdigest(),
                    guid=link,
                    link=link,
                    title=title,
                    text=title + "\n" + body,
                    published_at=T0 + timedelta(minutes=minutes),
                    locale=locale,
                    links=extra,
                    content_hash=hashlib.sha256(body.encode()).hexdigest(),
                )
            )
        s.commit()


def stories(engine: sa.Engine) -> dict[str, int]:
    with Session(engine) as s:
        return {i.link: i.story_id for i in s.exec(select(Item)).all() if i.link and i.story_id is not None}


def snapshot(engine: sa.Engine) -> tuple:
    with Session(engine) as s:
        return (
            sorted((i.id, i.story_id) for i in s.exec(select(Item)).all()),
            sorted((st.id, st.canonical_item_id) for st in s.exec(select(Story)).all()),
            sorted((r.story_id, r.related_id) for r in s.exec(select(RelatedStory)).all()),
            len(s.exec(select(MergeDecision)).all()),
            len(s.exec(select(FeedChange)).all()),
        )


def test_every_item_gets_one_story_and_reruns_change_nothing(engine: sa.Engine) -> None:
    add_items(engine, list(ARTICLES))
    report = run_dedupe(engine)
    assert report.items == 4
    got = stories(engine)
    en, pt, ja, other = (got[k] for k in ARTICLES)
    assert en == pt == ja != other
    with Session(engine) as s:
        story = s.get(Story, en)
        assert story is not None
        canonical = s.get(Item, story.canonical_item_id)
        assert canonical is not None and canonical.link == "https://coindesk.example/en/a1"
        related = s.exec(select(RelatedStory)).all()
        assert {(r.story_id, r.related_id) for r in related} == {(min(en, other), max(en, other))}
        # Explained: the two items that made the link and the anchors they share.
        (link,) = related
        items = {i.id: i.story_id for i in s.exec(select(Item)).all()}
        assert {items[i] for i in link.signals["items"]} == {en, other}
        assert link.signals["shared"] and link.signals["score"] == link.score
        decisions = {d.item_id: d for d in s.exec(select(MergeDecision)).all()}
        assert len(decisions) == 4
        assert sorted(d.kind for d in decisions.values()) == ["merge", "merge", "new", "new"]
        assert all(d.signals for d in decisions.values() if d.kind == "merge")
        assert {c.story_id for c in s.exec(select(FeedChange)).all()} == {en, other}
    before = snapshot(engine)
    assert run_dedupe(engine).items == 0
    assert snapshot(engine) == before


def test_new_items_join_stored_stories(engine: sa.Engine) -> None:
    links = list(ARTICLES)
    add_items(engine, [links[0], links[3]])
    run_dedupe(engine)
    first = stories(engine)
    add_items(engine, [links[1], links[2]])
    report = run_dedupe(engine)
    assert report.items == 2 and report.merged == 2 and report.new_stories == 0
    got = stories(engine)
    assert got[links[1]] == got[links[2]] == first[links[0]]


def test_editor_overrides_survive_reruns(engine: sa.Engine) -> None:
    links = list(ARTICLES)
    add_items(engine, links[:3])
    run_dedupe(engine)
    assert len(set(stories(engine).values())) == 1
    with Session(engine) as s:
        s.add(EditorialOverride(action="split", item_link=links[1], actor="ed"))
        s.commit()
    report = run_dedupe(engine)
    assert report.overrides_applied == 1
    got = stories(engine)
    assert got[links[1]] != got[links[0]] == got[links[2]]
    # A re-run (even with new items arriving) keeps the split, and the split story stays alone.
    add_items(engine, [links[3]])
    run_dedupe(engine)
    again = stories(engine)
    assert again[links[1]] != again[links[0]]
    assert list(again.values()).count(again[links[1]]) == 1
    # Merge it back by hand: the newest override wins.
    with Session(engine) as s:
        s.add(EditorialOverride(action="merge", item_link=links[1], other_link=links[0], actor="ed"))
        s.commit()
    run_dedupe(engine)
    final = stories(engine)
    assert final[links[1]] == final[links[0]]
    with Session(engine) as s:
        item = s.exec(select(Item).where(Item.link == links[1])).one()
        decision = s.exec(select(MergeDecision).where(MergeDecision.item_id == item.id)).one()
        assert decision.kind == "editor" and decision.signals["override"] == "merge"
        # The story the split created is gone, with a "removed" change for the feeds.
        assert s.get(Story, again[links[1]]) is None
        assert s.exec(select(FeedChange).where(FeedChange.change == "removed")).first() is not None
        # Every kind ``Assignment.kind`` declares is stored here, and no other.
        kinds = {d.kind for d in s.exec(select(MergeDecision)).all()}
        assert kinds == set(ASSIGNMENT_KINDS)
    before = snapshot(engine)
    run_dedupe(engine)
    assert snapshot(engine) == before


def test_rows_written_without_models_are_the_models_rows() -> None:
    """``_cluster`` writes new stories and decisions as plain rows: every column the model would
    dump, with the same values (the times the models stamp themselves excepted)."""
    from aggregator.dedupe.cluster import Assignment
    from aggregator.dedupe.run import decision_row, story_row

    first, now = datetime(2025, 3, 14, 8, 30, tzinfo=UTC), datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    model = Story(first_published_at=first, updated_at=now).model_dump(exclude={"id"})
    row = story_row(first, now)
    assert row.keys() == model.keys()
    assert {k: v for k, v in row.items() if k != "stored_at"} == {
        k: v for k, v in model.items() if k != "stored_at"
    }
    assert isinstance(row["stored_at"], datetime) and row["stored_at"].tzinfo is not None
    for a in (
        Assignment(
            7, 3, "merge", matched_doc=5, score=0.812345678, threshold=0.5, signals={"figures": [1.5]}
        ),
        Assignment(8, -1, "new"),
    ):
        model = MergeDecision(
            item_id=a.doc_id,
            story_id=12,
            matched_item_id=a.matched_doc,
            kind=a.kind,
            score=round(a.score, 4),
            threshold=a.threshold,
            signals=a.signals,
        ).model_dump(exclude={"id"})
        row = decision_row(a, 12)
        assert row.keys() == model.keys()
        assert {k: v for k, v in row.items() if k != "decided_at"} == {
            k: v for k, v in model.items() if k != "decided_at"
        }
        assert isinstance(row["decided_at"], datetime) and row["decided_at"].tzinfo is not None

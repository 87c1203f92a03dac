"""The review queue: dedupe's stored decisions nearest their thresholds, most uncertain first —
merges that barely cleared their threshold (declared identities are not guesses and stay out),
items that founded a story while a candidate came close (``signals["nearest"]``), related links
with a low score — for an editor to confirm, or correct (a merge is split off or moved; a
non-merge joins its nearest candidate's story or the one named; a related pair is merged).
Verdicts are kept (``reviewverdict``) and become labelled data (``export_labels``, ``eval/``'s
corpus format).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from aggregator.editorial import Actor
from aggregator.editorial import stories as story_actions
from aggregator.editorial.audit import record
from aggregator.models import Item, MergeDecision, RelatedStory, ReviewVerdict, Source, Story
from core.errors import EditorialError, NotFoundError


def _related_bar() -> float:
    from aggregator.dedupe.policy import DEFAULT

    return float(DEFAULT.related)


def _related_key(a: int, b: int) -> str:
    return f"related:{min(a, b)}:{max(a, b)}"


def queue(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Unreviewed decisions, smallest margin over the threshold first."""
    reviewed = set(session.exec(select(ReviewVerdict.item_link)).all())
    entries: list[dict[str, Any]] = []
    rows = session.exec(
        select(MergeDecision, Item.link, Item.title, Item.locale)
        .join(Item, col(Item.id) == MergeDecision.item_id)
        .where(col(MergeDecision.kind).in_(("merge", "new")))
    ).all()
    for d, link, title, locale in rows:
        signals = d.signals or {}
        if not link or link in reviewed or signals.get("declared"):
            continue  # a declared identity (same article, attribution link) is not a guess
        entry: dict[str, Any] = {
            "key": link,
            "kind": d.kind,
            "story_id": d.story_id,
            "item_id": d.item_id,
            "url": link,
            "title": title,
            "locale": locale,
            "matched_item_id": d.matched_item_id,
            "score": d.score,
            "threshold": d.threshold,
            "signals": signals,
        }
        if d.kind == "new":
            nearest = signals.get("nearest")
            if not isinstance(nearest, dict) or not isinstance(nearest.get("item"), int):
                continue
            entry.update(
                matched_item_id=nearest["item"],
                score=float(nearest.get("score", 0.0)),
                threshold=float(nearest.get("threshold", 0.0)),
            )
        entry["margin"] = round(entry["score"] - entry["threshold"], 4)
        entries.append(entry)
    bar = _related_bar()
    for r in session.exec(select(RelatedStory)).all():
        key = _related_key(r.story_id, r.related_id)
        if key in reviewed:
            continue
        entries.append(
            {
                "key": key,
                "kind": "related",
                "story_id": r.story_id,
                "related_id": r.related_id,
                "score": r.score,
                "threshold": bar,
                "margin": round(r.score - bar, 4),
                "signals": r.signals,
            }
        )
    entries.sort(key=lambda e: (abs(e["margin"]), e["key"]))
    return entries[:limit]


def decide(
    session: Session, actor: Actor, key: str, verdict: str, story_id: int | None = None
) -> dict[str, Any]:
    """Confirm or correct the queue entry ``key`` (a member's URL, or ``related:A:B``)."""
    if verdict not in ("confirm", "correct"):
        raise EditorialError("verdict: confirm or correct")
    entry = next((e for e in queue(session, limit=10**6) if e["key"] == key), None)
    if entry is None:
        raise NotFoundError(f"nothing to review under {key[:200]!r}")
    result: dict[str, Any] = {"key": key, "verdict": verdict}
    if verdict == "correct":
        if entry["kind"] == "new":
            target = story_id
            if target is None:
                nearest = session.get(Item, entry["matched_item_id"])
                if nearest is None or nearest.story_id is None:
                    raise NotFoundError("the nearest candidate is gone; name the story to move it to")
                target = nearest.story_id
            result["story_id"] = story_actions.move(session, actor, entry["story_id"], entry["url"], target)
        elif entry["kind"] == "merge":
            if story_id is None:
                result["story_id"] = story_actions.split(session, actor, entry["story_id"], entry["url"])
            else:
                result["story_id"] = story_actions.move(
                    session, actor, entry["story_id"], entry["url"], story_id
                )
        else:
            result["story_id"] = story_actions.merge(session, actor, entry["story_id"], entry["related_id"])
    session.add(
        ReviewVerdict(
            item_link=key,
            verdict=verdict,
            decision_kind=entry["kind"],
            story_id=result.get("story_id", entry["story_id"]),
            actor=actor.name,
        )
    )
    record(
        session,
        actor,
        f"review.{verdict}",
        key,
        {k: entry[k] for k in ("kind", "story_id", "score", "threshold")},
        result,
    )
    return result


_PARA = re.compile(r"\n+")


def export_labels(session: Session, directory: Path) -> int:
    """One ``eval/`` event file per reviewed story (with its related stories as the event's other
    stories: the hard negatives); returns the number of files written."""
    verdicts = session.exec(select(ReviewVerdict).order_by(col(ReviewVerdict.id))).all()
    story_ids: set[int] = set()
    for v in verdicts:
        if v.decision_kind == "merge":
            item = session.exec(select(Item).where(Item.link == v.item_link)).first()
            if item is not None and item.story_id is not None:
                story_ids.add(item.story_id)
        elif v.story_id is not None:
            story_ids.add(v.story_id)
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for sid in sorted(story_ids):
        if session.get(Story, sid) is None:
            continue
        links = session.exec(
            select(RelatedStory).where((RelatedStory.story_id == sid) | (RelatedStory.related_id == sid))
        ).all()
        group = [sid, *sorted({r.related_id if r.story_id == sid else r.story_id for r in links})]
        stories = [s for s in (_story_json(session, g) for g in group) if s is not None]
        event = {
            "event": f"editor-{sid}",
            "about": stories[0]["versions"][0]["title"] if stories and stories[0]["versions"] else "",
            "day": stories[0]["published"][:10] if stories else "",
            "stories": stories,
        }
        (directory / f"editor-{sid}.json").write_text(
            json.dumps(event, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        written += 1
    return written


def _story_json(session: Session, story_id: int) -> dict[str, Any] | None:
    story = session.get(Story, story_id)
    if story is None:
        return None
    items = session.exec(
        select(Item, Source.outlet_id)
        .join(Source, col(Source.id) == Item.source_id)
        .where(Item.story_id == story_id, Item.tombstone == False)  # noqa: E712
        .order_by(col(Item.published_at), col(Item.id))
        .options(defer(Item.dedupe_features))  # type: ignore[arg-type]
    ).all()
    if not items:
        return None
    first = min(i.published_at for i, _ in items)
    seen: dict[tuple[str, str], bool] = defaultdict(bool)
    versions = []
    for item, outlet in items:
        if seen[(outlet, item.locale)]:
            continue
        seen[(outlet, item.locale)] = True
        body = item.text[len(item.title) :] if item.text.startswith(item.title) else item.text
        versions.append(
            {
                "outlet": outlet,
                "locale": item.locale,
                "original": item.id == story.canonical_item_id,
                "lag_minutes": int((item.published_at - first).total_seconds() // 60),
                "title": item.title,
                "paragraphs": [p.strip() for p in _PARA.split(body) if p.strip()] or [item.title],
            }
        )
    return {
        "story": f"editor-{story_id}",
        "kind": "editor-reviewed",
        "published": first.isoformat().replace("+00:00", "Z"),
        "tickers": sorted({t for i, _ in items for t in (i.tickers or [])}),
        "versions": versions,
    }

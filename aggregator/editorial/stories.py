"""Editors' story actions: split, merge, move a member, set the original, hide, pin, retitle.

Each action is stored as ``editorialoverride`` rows keyed by item links (story ids may change
when dedupe runs again; links do not) and applied at once through dedupe's own override step
(``reapply_overrides``), which every later dedupe run applies again: an edit survives re-polls
and re-runs. Each action writes one audit row with the story's state before and after.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from aggregator import LOCALES
from aggregator.editorial import Actor
from aggregator.editorial.audit import record
from aggregator.models import EditorialOverride, Item, MergeDecision, RelatedStory, Source, Story
from aggregator.normalize.urls import identity_url
from core.errors import ConflictError, EditorialError, NotFoundError

MAX_TITLE = 500


def _norm(url: str | None) -> str | None:
    """Dedupe's key of a URL: the one overrides are matched by."""
    return identity_url(url)


def _story(session: Session, story_id: int) -> Story:
    story = session.get(Story, story_id)
    if story is None:
        raise NotFoundError(f"story {story_id} not found")
    return story


def members(session: Session, story_id: int) -> list[Item]:
    return list(
        session.exec(
            select(Item)
            .where(Item.story_id == story_id)
            .order_by(col(Item.published_at), col(Item.id))
            .options(defer(Item.dedupe_features))  # type: ignore[arg-type]
        ).all()
    )


def _member(session: Session, story_id: int, url: str) -> Item:
    if not isinstance(url, str) or not url.strip():
        raise EditorialError("url: a member's URL is required")
    key = _norm(url)
    for item in members(session, story_id):
        if item.link and _norm(item.link) == key:
            return item
    raise NotFoundError(f"story {story_id} has no member {url[:200]!r}")


def _anchor(session: Session, story: Story) -> str:
    """The link that names this story in an override: its original's, else its first member's."""
    found = members(session, story.id or 0)
    canonical = next((i for i in found if i.id == story.canonical_item_id and i.link), None)
    anchor = canonical or next((i for i in found if i.link), None)
    if anchor is None or anchor.link is None:
        raise ConflictError(f"story {story.id} has no member with a link to anchor an edit on")
    return anchor.link


def state(session: Session, story_id: int) -> dict[str, Any] | None:
    """What an audit row keeps of a story: its flags and its members' links."""
    story = session.get(Story, story_id)
    if story is None:
        return None
    found = members(session, story_id)
    original = next((i.link for i in found if i.id == story.canonical_item_id), None)
    return {
        "story_id": story_id,
        "hidden": story.hidden,
        "pinned": story.pinned,
        "pinned_until": story.pinned_until.isoformat() if story.pinned_until else None,
        "pinned_locale": story.pinned_locale,
        "titles": dict(story.titles or {}),
        "original": original,
        "members": [i.link for i in found],
    }


def _apply(session: Session, *overrides: EditorialOverride) -> None:
    from aggregator.dedupe.run import reapply_overrides

    for o in overrides:
        session.add(o)
    reapply_overrides(session)


def _override(
    actor: Actor, action: str, link: str, other: str | None = None, **payload: Any
) -> EditorialOverride:
    return EditorialOverride(
        action=action, item_link=link, other_link=other, actor=actor.name, payload=payload
    )


def split(session: Session, actor: Actor, story_id: int, url: str) -> int:
    """The member at ``url`` leaves the story and stands alone; returns its new story id."""
    _story(session, story_id)
    item = _member(session, story_id, url)
    if len(members(session, story_id)) == 1:
        raise ConflictError(f"{url[:200]!r} is already the only member of story {story_id}")
    before = state(session, story_id)
    assert item.link is not None
    _apply(session, _override(actor, "split", item.link))
    session.refresh(item)
    assert item.story_id is not None
    record(
        session,
        actor,
        "story.split",
        f"story:{story_id}",
        before,
        {"story": state(session, story_id), "new_story": state(session, item.story_id)},
    )
    return item.story_id


def merge(session: Session, actor: Actor, story_id: int, other_id: int) -> int:
    """Every member of story ``other_id`` joins story ``story_id``; returns ``story_id``."""
    if story_id == other_id:
        raise EditorialError("story_id: cannot merge a story into itself")
    target = _story(session, story_id)
    _story(session, other_id)
    anchor = _anchor(session, target)
    moving = [i for i in members(session, other_id) if i.link]
    if not moving:
        raise ConflictError(f"story {other_id} has no member with a link to merge by")
    before = {"story": state(session, story_id), "merged": state(session, other_id)}
    _apply(session, *(_override(actor, "merge", i.link or "", anchor) for i in moving))
    record(session, actor, "story.merge", f"story:{story_id}", before, {"story": state(session, story_id)})
    return story_id


def move(session: Session, actor: Actor, story_id: int, url: str, to_story_id: int) -> int:
    """The member at ``url`` moves from story ``story_id`` to story ``to_story_id``."""
    if story_id == to_story_id:
        raise EditorialError("story_id: the member is already in that story")
    _story(session, story_id)
    target = _story(session, to_story_id)
    item = _member(session, story_id, url)
    anchor = _anchor(session, target)
    before = {"from": state(session, story_id), "to": state(session, to_story_id)}
    _apply(session, _override(actor, "merge", item.link or "", anchor))
    record(
        session,
        actor,
        "story.move",
        f"story:{story_id}",
        before,
        {"from": state(session, story_id), "to": state(session, to_story_id)},
    )
    return to_story_id


def set_original(session: Session, actor: Actor, story_id: int, url: str) -> None:
    _story(session, story_id)
    item = _member(session, story_id, url)
    before = state(session, story_id)
    _apply(session, _override(actor, "original", item.link or ""))
    record(session, actor, "story.original", f"story:{story_id}", before, state(session, story_id))


def set_hidden(session: Session, actor: Actor, story_id: int, hidden: bool) -> None:
    story = _story(session, story_id)
    before = state(session, story_id)
    _apply(session, _override(actor, "hide" if hidden else "unhide", _anchor(session, story)))
    record(
        session,
        actor,
        "story.hide" if hidden else "story.unhide",
        f"story:{story_id}",
        before,
        state(session, story_id),
    )


def pin(session: Session, actor: Actor, story_id: int, until: datetime | None, locale: str | None) -> None:
    """Top of the feed (of ``locale``, or of every locale) until ``until`` (or until unpinned)."""
    story = _story(session, story_id)
    if until is not None:
        if until.tzinfo is None:
            raise EditorialError("until: give a time zone (e.g. 2026-12-08T09:00:00Z)")
        until = until.astimezone(UTC)
        if until <= datetime.now(UTC):
            raise EditorialError("until: must be in the future")
    if locale is not None and locale not in LOCALES:
        raise EditorialError(f"locale: unknown locale {locale!r}")
    before = state(session, story_id)
    payload = {"until": until.isoformat() if until else None, "locale": locale}
    _apply(session, _override(actor, "pin", _anchor(session, story), **payload))
    record(session, actor, "story.pin", f"story:{story_id}", before, state(session, story_id))


def unpin(session: Session, actor: Actor, story_id: int) -> None:
    story = _story(session, story_id)
    before = state(session, story_id)
    _apply(session, _override(actor, "unpin", _anchor(session, story)))
    record(session, actor, "story.unpin", f"story:{story_id}", before, state(session, story_id))


def set_title(session: Session, actor: Actor, story_id: int, locale: str, title: str) -> None:
    """The story's title in ``locale``; an empty title drops the edit (the member's own title shows)."""
    story = _story(session, story_id)
    if locale not in LOCALES:
        raise EditorialError(f"locale: unknown locale {locale!r}")
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise EditorialError(f"title: at most {MAX_TITLE} characters")
    before = state(session, story_id)
    _apply(session, _override(actor, "title", _anchor(session, story), locale=locale, title=title))
    record(session, actor, "story.title", f"story:{story_id}", before, state(session, story_id))


def detail(session: Session, story_id: int) -> dict[str, Any]:
    """A story as editors see it (hidden ones too): members with their merge decisions, related."""
    story = _story(session, story_id)
    found = members(session, story_id)
    outlets = dict(
        session.exec(
            select(Source.id, Source.outlet_id).where(col(Source.id).in_({i.source_id for i in found}))
        ).all()
    )
    decisions = {
        d.item_id: d
        for d in session.exec(
            select(MergeDecision).where(col(MergeDecision.item_id).in_([i.id for i in found]))
        ).all()
    }
    related = session.exec(
        select(RelatedStory).where(
            (RelatedStory.story_id == story_id) | (RelatedStory.related_id == story_id)
        )
    ).all()
    out = state(session, story_id) or {}
    out["first_published_at"] = story.first_published_at.isoformat()
    out["members"] = [
        {
            "id": i.id,
            "url": i.link,
            "locale": i.locale,
            "outlet": outlets.get(i.source_id),
            "title": i.title,
            "published_at": i.published_at.isoformat(),
            "is_original": i.id == story.canonical_item_id,
            "decision": _decision(decisions.get(i.id or 0)),
        }
        for i in found
    ]
    out["related"] = sorted(
        (
            {"id": r.related_id if r.story_id == story_id else r.story_id, "score": round(r.score, 4)}
            for r in related
        ),
        key=lambda r: -r["score"],
    )
    return out


def _decision(d: MergeDecision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "kind": d.kind,
        "score": d.score,
        "threshold": d.threshold,
        "matched_item_id": d.matched_item_id,
        "signals": d.signals,
    }


def recent(session: Session, *, limit: int = 30, include_hidden: bool = True) -> list[int]:
    """Ids of the newest stories (by first publication), for the dashboard's stream."""
    q = select(Story.id).order_by(col(Story.first_published_at).desc(), col(Story.id).desc()).limit(limit)
    if not include_hidden:
        q = q.where(Story.hidden == False)  # noqa: E712
    return [i for i in session.exec(q).all() if i is not None]

"""Dedupe over the database: the I/O edge around the pure clustering in ``cluster``.

First, outside the clustering transaction and without any lock: the features of the items
without a story and of the stored items around them that lack valid ones are extracted (in
worker processes when there are many) and stored in ``Item.dedupe_features`` in short
transactions of their own, so the long work holds no write lock. Then one transaction
(serialized across processes: ``lock``):
1. load the items without a story, in (published_at, id) order, and the stored items published
   within the time window around them (the columns dedupe reads, never the HTML bodies); their
   features are the ones just extracted, or come from ``Item.dedupe_features`` while
   ``Item.dedupe_key`` still matches, else they are extracted and stored there (``codec``);
2. seed the clusterer with the stored items, then add the new ones (no write yet: on SQLite the
   write lock is taken by the first write below and held only while writing);
3. write stories (canonical = the original: the member others declare as original or name in an
   attribution line, else the earliest), ``Item.story_id``, one ``MergeDecision`` per item,
   ``RelatedStory`` rows (one row per pair, lower story id first) and a ``FeedChange`` per
   changed story, and the precomputed feed entries of the changed stories
   (``aggregator.entries.refresh_story_entries``);
4. apply every editorial override (split: the item stands alone; merge: the item joins the
   other item's story; then the story attributes: original, hidden, pin, titles), so they
   survive re-runs. ``reapply_overrides`` runs this step alone, for an editor's action.
Rows are written in batches (one multi-row statement per table and kind), not object by object.
Running it again with nothing new changes nothing.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, select

from aggregator.db import session_scope
from aggregator.dedupe.cluster import Assignment, Clusterer, collector_paused, related_signals
from aggregator.dedupe.codec import decode, dedupe_key, encode
from aggregator.dedupe.features import DedupeDoc, Extractor, Features
from aggregator.dedupe.ingest import article_key_fn, doc_from
from aggregator.dedupe.lock import serialize_run
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.pool import extract_encoded
from aggregator.entries import refresh_story_entries, related_neighbors
from aggregator.models import EditorialOverride, FeedChange, Item, MergeDecision, RelatedStory, Source, Story
from aggregator.normalize.urls import identity_url as norm_url
from aggregator.store import STORE_FEATURES, store_features
from aggregator.tables import utcnow

POOL_FROM = 400
"""Above this many items to extract in one run, extraction runs in two worker processes."""

_ITEMS = cast(sa.Table, Item.__table__)  # type: ignore[attr-defined]
_SOURCES = cast(sa.Table, Source.__table__)  # type: ignore[attr-defined]
_STORIES = cast(sa.Table, Story.__table__)  # type: ignore[attr-defined]
_DECISIONS = cast(sa.Table, MergeDecision.__table__)  # type: ignore[attr-defined]
_RELATED = cast(sa.Table, RelatedStory.__table__)  # type: ignore[attr-defined]
CHUNK = 500
"""Ids per ``IN (…)`` list and rows per feature-storing transaction."""


@dataclass
class DedupeReport:
    items: int = 0
    new_stories: int = 0
    merged: int = 0
    related_links: int = 0
    overrides_applied: int = 0
    changed_stories: set[int] = field(default_factory=set)


_article_key_fn = article_key_fn


class ItemRow(NamedTuple):
    """What dedupe reads of an item (never its HTML bodies), with its source's outlet."""

    id: int
    story_id: int | None
    locale: str
    link: str | None
    guid: str | None
    title: str
    text: str | None
    published_at: datetime
    image: str | None
    links: dict[str, Any] | None
    tickers: list[str] | None
    language: str | None
    dedupe_key: str | None
    outlet: str
    dedupe_features: bytes | None = None


_ROW_COLUMNS = (
    *(_ITEMS.c[name] for name in ItemRow._fields[:13]),
    _SOURCES.c.outlet_id,
)


def _select_rows(*where: Any, blobs: bool) -> sa.Select[Any]:
    columns = (*_ROW_COLUMNS, _ITEMS.c.dedupe_features) if blobs else _ROW_COLUMNS
    return (
        sa.select(*columns)
        .select_from(_ITEMS.join(_SOURCES, _SOURCES.c.id == _ITEMS.c.source_id))
        .where(*where)
        .order_by(_ITEMS.c.published_at, _ITEMS.c.id)
    )


def _load(
    conn: Session | sa.Connection, t: Thresholds, *, blobs: bool
) -> tuple[list[ItemRow], list[ItemRow]]:
    """The items without a story, in (published_at, id) order, and the stored items published within
    the window around them (the clusterer's context)."""
    new = [ItemRow(*r) for r in conn.execute(_select_rows(_ITEMS.c.story_id.is_(None), blobs=blobs))]
    if not new:
        return [], []
    window = timedelta(hours=max(t.window_hours, t.related_hours))
    lo = min(row.published_at for row in new) - window
    hi = max(row.published_at for row in new) + window
    context = [
        ItemRow(*r)
        for r in conn.execute(
            _select_rows(
                _ITEMS.c.story_id.is_not(None),
                _ITEMS.c.published_at >= lo,
                _ITEMS.c.published_at <= hi,
                blobs=blobs,
            )
        )
    ]
    return new, context


def _doc(item: ItemRow | Item, outlet: str) -> DedupeDoc:
    assert item.id is not None
    return doc_from(
        id=item.id,
        locale=item.locale,
        outlet=outlet,
        link=item.link,
        guid=item.guid,
        title=item.title,
        text=item.text,
        published_at=item.published_at,
        image=item.image,
        links=item.links,
        tickers=item.tickers,
        language=item.language,
    )


MEMBERSHIP = ("split", "merge")
"""Override actions that move items between stories; the others set attributes of a story."""


def _effective_overrides(session: Session) -> dict[str, EditorialOverride]:
    """The newest membership override per item link (a later split undoes an earlier merge, and back)."""
    out: dict[str, EditorialOverride] = {}
    for o in session.exec(
        select(EditorialOverride)
        .where(EditorialOverride.action.in_(MEMBERSHIP))  # type: ignore[attr-defined]
        .order_by(EditorialOverride.id)  # type: ignore[arg-type]
    ).all():
        key = norm_url(o.item_link)
        if key:
            out[key] = o
    return out


def run_dedupe(
    engine: sa.Engine, thresholds: Thresholds = DEFAULT, extractor: Extractor | None = None
) -> DedupeReport:
    """Assign every item without a story to one; link related stories; apply editors' overrides."""
    report = DedupeReport()

    @functools.cache
    def ex() -> (
        Extractor
    ):  # built only when there is something to extract (its first build loads the lexicon)
        return extractor or Extractor(thresholds=thresholds, article_key=_article_key_fn())

    fresh = prepare_features(engine, ex, thresholds)
    with session_scope(engine) as session:
        serialize_run(session)  # one run at a time across processes (DedupeBusy past a bounded wait)
        overrides = _effective_overrides(session)
        new_rows, context = _load(session, thresholds, blobs=True)
        if new_rows:
            _cluster(session, new_rows, context, overrides, thresholds, ex(), fresh, report)
        del new_rows, context, fresh
        report.overrides_applied = _apply_overrides(session, overrides, report)
        neighbors = _finish(session, report)
        _apply_story_overrides(session, report)
        refresh_story_entries(session, report.changed_stories | neighbors)
    return report


class Prepared(dict[int, tuple[str, Features, bytes]]):
    """Item id → (key, features, stored form) extracted by :func:`prepare_features`; ``computed``: the
    doc and key it computed for every row it read, so the run's transaction hashes a row again
    only when its doc is not the same (the row changed in between)."""

    def __init__(self) -> None:
        super().__init__()
        self.computed: dict[int, tuple[DedupeDoc, str]] = {}

    def key(self, ex: Extractor, doc: DedupeDoc) -> str:
        """``dedupe_key(ex, doc)``, from ``computed`` when the doc there equals ``doc``."""
        known = self.computed.get(doc.id)
        if known is not None and known[0] == doc:
            return known[1]
        return dedupe_key(ex, doc)


def prepare_features(engine: sa.Engine, extractor: Callable[[], Extractor], t: Thresholds) -> Prepared:
    """Before the clustering transaction, with no lock held: extract the features a run will need and
    does not find stored (items without a story, and stored items around them whose ``dedupe_key``
    no longer matches), store them in transactions of :data:`CHUNK` items each, and return them
    (item id → (key, features, blob)) for the run, which uses them while the key still matches.

    Storing is a cache write that never waits for a story writer: on PostgreSQL a chunk is stored
    only when the story writers' lock is free at once (writers that update items take it before
    the item rows, so taking it first keeps the two from deadlocking); a chunk not stored here is
    stored by the run's own transaction."""
    with engine.connect() as conn:
        new, context = _load(conn, t, blobs=False)
    if not new:
        return Prepared()
    ex = extractor()
    missing: list[tuple[DedupeDoc, str]] = []
    out = Prepared()
    for row in (*context, *new):
        doc = _doc(row, row.outlet)
        key = dedupe_key(ex, doc)
        out.computed[doc.id] = (doc, key)
        if row.dedupe_key != key:
            missing.append((doc, key))
    del new, context
    if not missing:
        return out
    workers = 2 if len(missing) > POOL_FROM else 1
    extracted = extract_encoded(ex, (doc for doc, _ in missing), workers, encode)
    pending: list[dict[str, Any]] = []
    for (doc, key), (f, blob) in zip(missing, extracted, strict=True):
        out[doc.id] = (key, f, blob)
        pending.append({"item_id": doc.id, "blob": blob, "key": key})
        if len(pending) >= CHUNK:
            store_features(engine, pending)
            pending = []
    if pending:
        store_features(engine, pending)
    return out


def reapply_overrides(session: Session) -> DedupeReport:
    """Make the stored stories agree with every override now, inside the caller's transaction
    (an editor's action): the last step of ``run_dedupe``, under the same lock."""
    report = DedupeReport()
    serialize_run(session)
    session.flush()
    report.overrides_applied = _apply_overrides(session, _effective_overrides(session), report)
    neighbors = _finish(session, report)
    _apply_story_overrides(session, report)
    refresh_story_entries(session, report.changed_stories | neighbors)
    return report


def _cluster(
    session: Session,
    new_rows: list[ItemRow],
    context: list[ItemRow],
    overrides: dict[str, EditorialOverride],
    t: Thresholds,
    ex: Extractor,
    fresh: Prepared,
    report: DedupeReport,
) -> None:
    split_links = {k for k, o in overrides.items() if o.action == "split"}
    clusterer = Clusterer(t)
    items: dict[int, ItemRow] = {}
    with collector_paused():
        # Kept apart from the clusterer, which forgets items that fall out of its window. Decoded
        # with the collector paused too: thousands of stored features are many small objects the
        # collector would rescan again and again (100 µs an item instead of 140-250).
        features = _features(session, ex, [*context, *new_rows], fresh)
        for item in context:
            assert item.story_id is not None
            items[item.id] = item
            closed = norm_url(item.link) in split_links
            clusterer.seed(features[item.id], item.story_id, closed=closed)
        assignments: list[Assignment] = []
        for item in new_rows:
            items[item.id] = item
            f = features[item.id]
            if norm_url(item.link) in split_links:
                key = clusterer.new_story_key()
                clusterer.seed(f, key, closed=True)
                assignments.append(Assignment(item.id, key, "editor", signals={"override": "split"}))
            else:
                assignments.append(clusterer.add(f))
    # New stories get rows (one statement, ids in the order the stories were founded); every
    # assignment is written with its reason.
    now = datetime.now(UTC)
    founded: dict[int, None] = {}
    founders: list[dict[str, Any]] = []
    for a in assignments:
        if a.story < 0 and a.story not in founded:
            founded[a.story] = None
            founders.append(story_row(items[a.doc_id].published_at, now))
    real: dict[int, int] = {}
    if founders:
        inserted = session.execute(
            sa.insert(_STORIES).returning(_STORIES.c.id, sort_by_parameter_order=True), founders
        )
        real = dict(zip(founded, inserted.scalars().all(), strict=True))
        report.new_stories += len(real)
    placed: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    for a in assignments:
        story_id = real.get(a.story, a.story)
        placed.append({"item_id": a.doc_id, "story": story_id})
        decisions.append(decision_row(a, story_id))
        report.items += 1
        report.merged += a.kind == "merge"
        report.changed_stories.add(story_id)
    session.execute(_PLACE_ITEM, placed)
    session.execute(sa.insert(_DECISIONS), decisions)
    del placed, decisions
    # Related links, one row per pair (lower id first).
    changed = sorted(report.changed_stories)
    existing: dict[tuple[int, int], tuple[int, float]] = {}
    for i in range(0, len(changed), CHUNK):
        chunk = changed[i : i + CHUNK]
        for row_id, a_id, b_id, score in session.execute(
            sa.select(_RELATED.c.id, _RELATED.c.story_id, _RELATED.c.related_id, _RELATED.c.score).where(
                _RELATED.c.story_id.in_(chunk) | _RELATED.c.related_id.in_(chunk)
            )
        ):
            existing[(a_id, b_id)] = (row_id, score)
    fresh_links: list[dict[str, Any]] = []
    stronger: list[dict[str, Any]] = []
    for (ka, kb), link in clusterer.kept_related().items():
        sa_id, sb_id = real.get(ka, ka), real.get(kb, kb)
        if sa_id == sb_id:
            continue
        lo_id, hi_id = min(sa_id, sb_id), max(sa_id, sb_id)
        row = existing.get((lo_id, hi_id)) or existing.get((hi_id, lo_id))
        if row is None:
            fresh_links.append(
                {
                    "story_id": lo_id,
                    "related_id": hi_id,
                    "score": link.score,
                    "signals": related_signals(link, features),
                }
            )
            existing[(lo_id, hi_id)] = (0, link.score)
            report.related_links += 1
            report.changed_stories.update((lo_id, hi_id))
        elif link.score > row[1] + 1e-9:
            stronger.append(
                {"row_id": row[0], "score": link.score, "signals": related_signals(link, features)}
            )
    if fresh_links:
        session.execute(sa.insert(_RELATED), fresh_links)
    if stronger:
        session.execute(_STRONGER_LINK, stronger)
    _set_canonicals(session, report.changed_stories, features)


def story_row(first_published_at: datetime, now: datetime) -> dict[str, Any]:
    """The ``story`` row of a new story, every column but the id: what ``Story(...).model_dump``
    gives, without building (and validating) a model per row (``tests/test_dedupe_run.py`` checks
    the two agree)."""
    return {
        "canonical_item_id": None,
        "first_published_at": first_published_at,
        "updated_at": now,
        "hidden": False,
        "pinned": False,
        "pinned_until": None,
        "pinned_locale": None,
        "titles": {},
        "stored_at": utcnow(),
    }


def decision_row(a: Assignment, story_id: int) -> dict[str, Any]:
    """The ``mergedecision`` row of an assignment, every column but the id (as ``story_row``)."""
    return {
        "item_id": a.doc_id,
        "story_id": story_id,
        "matched_item_id": a.matched_doc,
        "kind": a.kind,
        "score": round(a.score, 4),
        "threshold": a.threshold,
        "signals": a.signals,
        "decided_at": utcnow(),
    }


_PLACE_ITEM = (
    sa.update(_ITEMS).where(_ITEMS.c.id == sa.bindparam("item_id")).values(story_id=sa.bindparam("story"))
)
_STRONGER_LINK = (
    sa.update(_RELATED)
    .where(_RELATED.c.id == sa.bindparam("row_id"))
    .values(score=sa.bindparam("score"), signals=sa.bindparam("signals"))
)
_SET_CANONICAL = (
    sa.update(_STORIES)
    .where(_STORIES.c.id == sa.bindparam("sid"))
    .values(
        canonical_item_id=sa.bindparam("canonical"),
        first_published_at=sa.bindparam("first"),
        updated_at=sa.bindparam("now"),
    )
)


def _features(session: Session, ex: Extractor, rows: list[ItemRow], fresh: Prepared) -> dict[int, Features]:
    """Item id → features of every row: the ones :func:`prepare_features` just extracted, or decoded
    from the item's stored features, while the item's key matches; else extracted and stored back
    in this transaction (an item that changed since)."""
    out: dict[int, Features] = {}
    missing: list[tuple[DedupeDoc, str]] = []
    stored: list[dict[str, Any]] = []
    for item in rows:
        doc = _doc(item, item.outlet)
        key = fresh.key(ex, doc)
        known = fresh.get(doc.id)
        if known is not None and known[0] == key:
            f: Features | None = known[1]  # the key hashes the doc: the same doc
            if item.dedupe_key != key:  # not stored before the transaction
                stored.append({"item_id": doc.id, "blob": known[2], "key": key})
        else:
            f = decode(item.dedupe_features, doc) if item.dedupe_key == key else None
        if f is None:
            missing.append((doc, key))
        else:
            out[doc.id] = f
    if missing:
        workers = 2 if len(missing) > POOL_FROM else 1
        extracted = extract_encoded(ex, (doc for doc, _ in missing), workers, encode)
        for (doc, key), (f, blob) in zip(missing, extracted, strict=True):
            out[doc.id] = f
            stored.append({"item_id": doc.id, "blob": blob, "key": key})
    if stored:
        session.execute(STORE_FEATURES, stored)
    return out


class Member(NamedTuple):
    """What picking a story's original reads of a member item."""

    id: int
    link: str | None
    links: dict[str, Any] | None
    published_at: datetime


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(ids)
    for i in range(0, len(ordered), CHUNK):
        yield ordered[i : i + CHUNK]


def _set_canonicals(session: Session, story_ids: set[int], features: dict[int, Features]) -> None:
    """Canonical item and first publication time of each story in ``story_ids`` (one UPDATE
    statement; the members' columns that decide it, never whole rows)."""
    if not story_ids:
        return
    session.flush()
    c = _ITEMS.c
    now = datetime.now(UTC)
    values: list[dict[str, Any]] = []
    for chunk in _chunks(story_ids):
        live = set(session.execute(sa.select(_STORIES.c.id).where(_STORIES.c.id.in_(chunk))).scalars())
        members: dict[int, list[tuple[Member, str]]] = defaultdict(list)
        for item_id, story_id, link, links, published_at, outlet in session.execute(
            sa.select(c.id, c.story_id, c.link, c.links, c.published_at, _SOURCES.c.outlet_id)
            .select_from(_ITEMS.join(_SOURCES, _SOURCES.c.id == c.source_id))
            .where(c.story_id.in_(chunk))
            .order_by(c.published_at, c.id)
        ):
            members[story_id].append((Member(item_id, link, links, published_at), outlet))
        for story_id in chunk:
            found = members.get(story_id)
            if story_id not in live or not found:
                continue
            canonical = original_of(found, features)
            first = min(m.published_at for m, _ in found)
            values.append({"sid": story_id, "canonical": canonical, "first": first, "now": now})
    if values:
        session.execute(_SET_CANONICAL, values)
        _expire_stories(session, {v["sid"] for v in values})


def _expire_stories(session: Session, story_ids: set[int]) -> None:
    """Stories this session holds as objects were rewritten underneath them: reload on next use."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Story) and obj.id in story_ids:
            session.expire(obj)


def original_of(members: Sequence[tuple[Member, str]], features: dict[int, Features]) -> int:
    """The original among a story's items: declared attribution first, else the earliest.

    Declared: another member links to it as its original (``links["original"]``/``source``), or
    names its outlet in an attribution line ("originally published on CoinDesk").
    """
    by_link = {norm_url(i.link): i for i, _ in members if i.link}
    votes: dict[int, int] = defaultdict(int)
    for item, _ in members:
        links = item.links or {}
        for key in ("original", "source"):
            target = by_link.get(norm_url(links.get(key)) if isinstance(links.get(key), str) else None)
            if target is not None and target.id != item.id:
                votes[target.id] += 2
    if not votes:
        outlets = {outlet for _, outlet in members}
        for item, outlet in members:
            f = features.get(item.id)
            if f is None:
                continue
            for named in f.outlets_named & outlets:
                if named == outlet:
                    continue
                target = next(i for i, o in members if o == named)
                votes[target.id] += 1
    if votes:
        best = max(votes.values())
        winners = [i for i, _ in members if votes.get(i.id) == best]
        chosen = min(winners, key=lambda i: (i.published_at, i.id))
    else:
        chosen = min((i for i, _ in members), key=lambda i: (i.published_at, i.id))
    return chosen.id


def _apply_overrides(session: Session, overrides: dict[str, EditorialOverride], report: DedupeReport) -> int:
    """Make the stored stories agree with every editor's split and merge; count the moves."""
    if not overrides:
        return 0
    raw = {o.item_link for o in overrides.values()} | {
        o.other_link for o in overrides.values() if o.other_link
    }
    by_link: dict[str, Item] = {}
    rows = session.exec(
        select(Item).where(Item.link.in_(sorted(raw)), Item.story_id.is_not(None)).order_by(Item.id)  # type: ignore[union-attr,arg-type]
    ).all()
    for row in rows:
        link = norm_url(row.link)
        if link is not None and link not in by_link:
            by_link[link] = row
    moved = 0
    for key, o in sorted(overrides.items(), key=lambda kv: kv[1].id or 0):
        item = by_link.get(key)
        if item is None or item.story_id is None:
            continue
        old = item.story_id
        matched: int | None = None
        if o.action == "split":
            # Items a newer override merged into this one's story may stay with it: the split
            # came first, the merge was the editor's later word.
            joined_later = {
                by_link[k].id
                for k, m in overrides.items()
                if m.action == "merge"
                and (m.id or 0) > (o.id or 0)
                and norm_url(m.other_link) == key
                and k in by_link
            }
            others = session.exec(select(Item.id).where(Item.story_id == old, Item.id != item.id)).all()
            if not set(others) - joined_later:
                continue
            story = Story(first_published_at=item.published_at, updated_at=datetime.now(UTC))
            session.add(story)
            session.flush()
            assert story.id is not None
            target = story.id
        elif o.action == "merge":
            target_key = norm_url(o.other_link) or ""
            other = by_link.get(target_key)
            if other is None or other.story_id is None or other.story_id == old:
                continue
            newer = overrides.get(target_key)
            if newer is not None and newer.action == "split" and (newer.id or 0) > (o.id or 0):
                continue  # the target was split off after this merge: it stands alone
            target = other.story_id
            matched = other.id
        else:
            continue
        item.story_id = target
        session.add(item)
        decision = session.exec(select(MergeDecision).where(MergeDecision.item_id == item.id)).first()
        if decision is None:
            assert item.id is not None
            decision = MergeDecision(item_id=item.id, story_id=target)
        decision.story_id = target
        decision.kind = "editor"
        decision.signals = {"override": o.action, "override_id": o.id, "actor": o.actor}
        decision.matched_item_id = matched
        session.add(decision)
        report.changed_stories.update((old, target))
        moved += 1
    if moved:
        session.flush()
    return moved


def _finish(session: Session, report: DedupeReport) -> set[int]:
    """Drop stories left empty, refresh canonicals, log feed changes; return the stories related to
    the dropped ones (their entries list them)."""
    if not report.changed_stories:
        return set()
    session.flush()
    changed = sorted(report.changed_stories)
    counts = dict(
        session.exec(
            select(Item.story_id, sa.func.count())
            .where(Item.story_id.in_(changed))  # type: ignore[union-attr]
            .group_by(Item.story_id)  # type: ignore[arg-type]
        ).all()
    )
    removed = [story_id for story_id in changed if not counts.get(story_id)]
    # their related stories list them: rewritten below, so found before the links go
    neighbors = related_neighbors(session, removed)
    if report.overrides_applied:  # only editors move items between stories
        neighbors |= _prune_related(session, set(changed))
    for story_id in removed:
        for r in session.exec(
            select(RelatedStory).where(
                (RelatedStory.story_id == story_id) | (RelatedStory.related_id == story_id)
            )
        ).all():
            session.delete(r)
        session.flush()
        story = session.get(Story, story_id)
        if story is not None:
            session.delete(story)
        session.add(FeedChange(story_id=story_id, change="removed"))
    session.flush()
    live = {s for s in changed if counts.get(s)}
    if report.overrides_applied:
        _set_canonicals(session, live, {})
    for story_id in sorted(live):
        session.add(FeedChange(story_id=story_id, change="upsert"))
    return neighbors


def _prune_related(session: Session, story_ids: set[int]) -> set[int]:
    """Related rows of ``story_ids`` whose two linking items (``signals["items"]``) no longer sit in
    the two stories they link — an editor moved one: re-pointed at the stories that hold the items
    now (the stronger row wins), or dropped when both sit in one story or one is gone. Returns
    every story whose links changed (their entries list them)."""
    if not story_ids:
        return set()
    ids = sorted(story_ids)
    rows = session.exec(
        select(RelatedStory).where(
            RelatedStory.story_id.in_(ids) | RelatedStory.related_id.in_(ids)  # type: ignore[attr-defined]
        )
    ).all()
    linking = sorted({i for r in rows for i in _linking_items(r) or ()})
    holder: dict[int | None, int | None] = {
        item_id: story_id
        for item_id, story_id in session.exec(
            select(Item.id, Item.story_id).where(Item.id.in_(linking))  # type: ignore[union-attr]
        ).all()
    }
    touched: set[int] = set()
    for r in rows:
        items = _linking_items(r)
        if items is None:
            continue
        x, y = (holder.get(i) for i in items)
        if {x, y} == {r.story_id, r.related_id}:
            continue
        touched.update((r.story_id, r.related_id))
        session.delete(r)
        session.flush()
        if x is None or y is None or x == y:
            continue
        lo, hi = min(x, y), max(x, y)
        other = session.exec(
            select(RelatedStory).where(RelatedStory.story_id == lo, RelatedStory.related_id == hi)
        ).first()
        touched.update((lo, hi))
        if other is None:
            session.add(RelatedStory(story_id=lo, related_id=hi, score=r.score, signals=r.signals))
        elif r.score > other.score:
            other.score, other.signals = r.score, r.signals
            session.add(other)
        session.flush()
    return touched


def _linking_items(row: RelatedStory) -> tuple[int, int] | None:
    items = (row.signals or {}).get("items")
    if isinstance(items, list) and len(items) == 2 and all(isinstance(i, int) for i in items):
        return items[0], items[1]
    return None


def _apply_story_overrides(session: Session, report: DedupeReport) -> None:
    """Set each story's original, visibility, pin and titles from the editors' overrides, in the
    order they were made, on the story that holds each override's item now."""
    rows = session.exec(
        select(EditorialOverride)
        .where(EditorialOverride.action.not_in(MEMBERSHIP))  # type: ignore[attr-defined]
        .order_by(EditorialOverride.id)  # type: ignore[arg-type]
    ).all()
    if not rows:
        return
    raw = sorted({o.item_link for o in rows})
    by_link: dict[str, Item] = {}
    for item in session.exec(
        select(Item)
        .where(Item.link.in_(raw), Item.story_id.is_not(None))  # type: ignore[union-attr]
        .order_by(Item.id)  # type: ignore[arg-type]
        .options(defer(Item.dedupe_features))  # type: ignore[arg-type]
    ).all():
        link = norm_url(item.link)
        if link is not None and link not in by_link:
            by_link[link] = item
    wanted: dict[int, dict[str, Any]] = defaultdict(dict)
    for o in rows:
        found = by_link.get(norm_url(o.item_link) or "")
        if found is None or found.story_id is None:
            continue
        item = found
        state = wanted[found.story_id]
        payload = o.payload or {}
        if o.action == "original":
            state["canonical_item_id"] = item.id
        elif o.action in ("hide", "unhide"):
            state["hidden"] = o.action == "hide"
        elif o.action == "pin":
            until = payload.get("until")
            state["pinned"] = True
            state["pinned_until"] = datetime.fromisoformat(until) if isinstance(until, str) else None
            state["pinned_locale"] = payload.get("locale")
        elif o.action == "unpin":
            state.update(pinned=False, pinned_until=None, pinned_locale=None)
        elif o.action == "title":
            titles = dict(state.get("titles", {}))
            locale, title = str(payload.get("locale", "")), str(payload.get("title", "")).strip()
            if title:
                titles[locale] = title
            else:
                titles.pop(locale, None)
            state["titles"] = titles
    for story_id, state in sorted(wanted.items()):
        story = session.get(Story, story_id)
        if story is None:
            continue
        changed = False
        for attr, value in state.items():
            if getattr(story, attr) != value:
                setattr(story, attr, value)
                changed = True
        if changed:
            story.updated_at = datetime.now(UTC)
            session.add(story)
            if story_id not in report.changed_stories:
                session.add(FeedChange(story_id=story_id, change="upsert"))
            report.changed_stories.add(story_id)
    session.flush()

"""The read path as it was before the precomputed entries (issue 17), kept as the differential
test's oracle: the old page statement over stories, members and related members, grouped per
story, and the old per-request rendering — with the contract's two intended changes applied:
summaries are served as ingest stored them (no second sanitizer pass) and disclaimers are left to
the API (they follow the reader now). Nothing outside the tests imports it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.models import UTCDateTime
from aggregator.normalize.markup import html_to_text
from api.dbapi import compiled_for
from core.fallbacks import (
    FALLBACKS,
    Chain,
    ScriptConverter,
    best_by_locale,
    chain_for,
    choose,
    in_chain,
    member_locale,
)
from core.locales import LOCALES

STORY = SQLModel.metadata.tables["story"]
ITEM = SQLModel.metadata.tables["item"]
SOURCE = SQLModel.metadata.tables["source"]
OUTLET = SQLModel.metadata.tables["outlet"]
RELATED = SQLModel.metadata.tables["relatedstory"]
DISCLAIMER = SQLModel.metadata.tables["disclaimer"]
FEEDCHANGE = SQLModel.metadata.tables["feedchange"]


def live_member(never: frozenset[str]) -> sa.Exists:
    cond = [ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false()]
    # one plain bind per locale, not an expanding IN: ``CompiledStatement`` binds values as they are
    cond += [ITEM.c.locale != sa.bindparam(f"never_{i}", loc) for i, loc in enumerate(sorted(never))]
    return sa.exists().where(*cond)


MEMBER, RELATED_MEMBER, DISCLAIMER_ROW = 0, 1, 2

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "kind": sa.Integer(),
    "sid": sa.Integer(),
    "other": sa.Integer(),
    "score": sa.Float(),
    "first_published_at": sa.DateTime(),
    "pinned": sa.Boolean(),
    "canonical_item_id": sa.Integer(),
    "item_id": sa.Integer(),
    "link": sa.String(),
    "title": sa.String(),
    "summary_html": sa.Text(),
    "published_at": sa.DateTime(),
    "image": sa.String(),
    "locale": sa.String(),
    "language": sa.String(),
    "tickers": sa.Text(),
    "outlet_id": sa.String(),
    "outlet_name": sa.String(),
    "policy": sa.String(),
    "version": sa.Integer(),
    "text": sa.Text(),
}
"""The columns every part of the page statement returns (NULL where a part has nothing), in order.

Datetimes are plain ``DateTime`` (naive UTC), not ``UTCDateTime``: see the module docstring."""


def _part(kind: int, **given: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(
        *(
            (
                sa.literal_column(str(kind), type_)
                if name == "kind"
                else sa.type_coerce(given[name], type_)
                if name in given
                else sa.cast(sa.null(), type_)
            ).label(name)
            for name, type_ in _COLUMNS.items()
        )
    )


def _page_statement(stories: sa.Select[Any]) -> sa.CompoundSelect[Any]:
    """Members, related members and disclaimers of the stories ``stories`` selects (ordered, limited)."""
    page = stories.cte("page")
    members = _part(
        MEMBER,
        sid=page.c.id,
        first_published_at=page.c.first_published_at,
        pinned=page.c.pinned,
        canonical_item_id=page.c.canonical_item_id,
        item_id=ITEM.c.id,
        link=ITEM.c.link,
        title=ITEM.c.title,
        summary_html=ITEM.c.summary_html,
        published_at=ITEM.c.published_at,
        image=ITEM.c.image,
        locale=ITEM.c.locale,
        language=ITEM.c.language,
        tickers=sa.cast(ITEM.c.tickers, sa.Text),
        outlet_id=SOURCE.c.outlet_id,
        outlet_name=OUTLET.c.name,
        policy=OUTLET.c.disclaimer_policy,
    ).select_from(
        page.join(ITEM, sa.and_(ITEM.c.story_id == page.c.id, ITEM.c.tombstone == sa.false()))
        .join(SOURCE, SOURCE.c.id == ITEM.c.source_id)
        .join(OUTLET, OUTLET.c.id == SOURCE.c.outlet_id)
    )
    in_page = sa.select(page.c.id)
    pairs = sa.union_all(
        sa.select(
            RELATED.c.story_id.label("mine"), RELATED.c.related_id.label("other"), RELATED.c.score
        ).where(RELATED.c.story_id.in_(in_page)),
        sa.select(RELATED.c.related_id, RELATED.c.story_id, RELATED.c.score).where(
            RELATED.c.related_id.in_(in_page)
        ),
    ).subquery("pairs")
    related = _part(
        RELATED_MEMBER,
        sid=pairs.c.mine,
        other=pairs.c.other,
        score=pairs.c.score,
        canonical_item_id=STORY.c.canonical_item_id,
        item_id=ITEM.c.id,
        link=ITEM.c.link,
        title=ITEM.c.title,
        published_at=ITEM.c.published_at,
        locale=ITEM.c.locale,
        language=ITEM.c.language,
    ).select_from(
        pairs.join(STORY, sa.and_(STORY.c.id == pairs.c.other, STORY.c.hidden == sa.false())).join(
            ITEM, sa.and_(ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false())
        )
    )
    newer = DISCLAIMER.alias("newer")
    disclaimers = _part(
        DISCLAIMER_ROW,
        policy=DISCLAIMER.c.policy,
        locale=DISCLAIMER.c.locale,
        version=DISCLAIMER.c.version,
        text=DISCLAIMER.c.text,
    ).where(
        ~sa.exists().where(
            newer.c.policy == DISCLAIMER.c.policy,
            newer.c.locale == DISCLAIMER.c.locale,
            newer.c.version > DISCLAIMER.c.version,
        )
    )
    return sa.union_all(members, related, disclaimers)


_STORY_COLUMNS = (STORY.c.id, STORY.c.first_published_at, STORY.c.pinned, STORY.c.canonical_item_id)


@lru_cache(maxsize=256)
def feed_statement(
    keyset: bool, tickers: int, by_outlet: bool, never: frozenset[str], limit: int
) -> sa.CompoundSelect[Any]:
    """The page statement of one request shape, built once: SQLAlchemy statement construction costs
    more CPU than the database spends running it. ``limit`` (stories to fetch) is rendered as a
    literal; bind, by shape, ``after_ts``/``after_id``, ``ticker_0``… (LIKE patterns) and ``outlet``."""
    q = sa.select(*_STORY_COLUMNS).where(STORY.c.hidden == sa.false(), live_member(never))
    if keyset:
        after = sa.tuple_(
            sa.bindparam("after_ts", type_=UTCDateTime()), sa.bindparam("after_id", type_=sa.Integer())
        )
        q = q.where(sa.tuple_(STORY.c.first_published_at, STORY.c.id) < after)
    if tickers:
        as_text = sa.cast(ITEM.c.tickers, sa.Text)
        q = q.where(
            sa.exists().where(
                ITEM.c.story_id == STORY.c.id,
                ITEM.c.tombstone == sa.false(),
                sa.or_(*(as_text.like(sa.bindparam(f"ticker_{i}", type_=sa.Text())) for i in range(tickers))),
            )
        )
    if by_outlet:
        q = q.where(
            sa.exists()
            .select_from(ITEM.join(SOURCE, SOURCE.c.id == ITEM.c.source_id))
            .where(
                ITEM.c.story_id == STORY.c.id,
                ITEM.c.tombstone == sa.false(),
                SOURCE.c.outlet_id == sa.bindparam("outlet", type_=sa.String()),
            )
        )
    q = q.order_by(STORY.c.first_published_at.desc(), STORY.c.id.desc()).limit(
        sa.literal_column(str(int(limit)), sa.Integer)
    )
    return _page_statement(q)


@lru_cache(maxsize=1)
def story_statement() -> sa.CompoundSelect[Any]:
    """One visible story with its live members; bind ``story_id``."""
    return _page_statement(
        sa.select(*_STORY_COLUMNS).where(
            STORY.c.id == sa.bindparam("story_id", type_=sa.Integer()), STORY.c.hidden == sa.false()
        )
    )


@dataclass(slots=True)
class MemberRow:
    """A live (not tombstoned) member of a story, as locale choice and rendering need it.

    ``published_at`` is naive UTC, as the database returns it: it is only compared here."""

    id: int
    story_id: int
    url: str | None
    title: str
    summary_html: str
    published_at: datetime
    image: str | None
    effective_locale: str
    tickers: tuple[str, ...]
    outlet_id: str
    outlet_name: str
    policy: str
    is_original: bool


@dataclass(slots=True)
class StoryRow:
    id: int
    first_published_at: datetime
    """Naive UTC."""
    pinned: bool


@dataclass(slots=True)
class RelatedMember:
    """A live member of a related story: just enough to link to it in the reader's locale."""

    id: int
    story_id: int
    url: str | None
    title: str
    published_at: datetime
    effective_locale: str
    is_original: bool


@dataclass(slots=True)
class PageRows:
    """Everything one page statement returned, grouped."""

    stories: list[StoryRow] = field(default_factory=list)
    """Newest first."""
    members: dict[int, list[MemberRow]] = field(default_factory=lambda: defaultdict(list))
    related: dict[int, list[int]] = field(default_factory=dict)
    """Story id → related story ids, most related first."""
    related_members: dict[int, list[RelatedMember]] = field(default_factory=dict)
    disclaimers: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(policy, locale) → (text, version) of the newest editors' version."""


@lru_cache(maxsize=1024)
def _tickers(raw: str | None) -> tuple[str, ...]:
    """The stored JSON list of tickers (few distinct values: parsed once per process)."""
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


def read_page(conn: sa.Connection, statement: sa.CompoundSelect[Any], params: Mapping[str, Any]) -> PageRows:
    """Run a page statement and group its rows (one round trip)."""
    out = PageRows()
    stories: dict[int, StoryRow] = {}
    scored: dict[int, dict[int, float]] = defaultdict(dict)
    related: dict[int, dict[int, RelatedMember]] = defaultdict(dict)
    for (
        kind, sid, other, score, first_published_at, pinned, canonical_item_id, item_id, link, title,
        summary_html, published_at, image, locale, language, tickers, outlet_id, outlet_name, policy,
        version, text,
    ) in compiled_for(statement, conn.dialect).rows(conn, params):  # fmt: skip
        if kind == MEMBER:
            if sid not in stories:
                stories[sid] = StoryRow(sid, first_published_at, bool(pinned))
            out.members[sid].append(
                MemberRow(
                    item_id,
                    sid,
                    link,
                    title or "",
                    summary_html or "",
                    published_at,
                    image,
                    member_locale(locale, language) if language else locale,
                    _tickers(tickers),
                    outlet_id,
                    outlet_name,
                    policy,
                    canonical_item_id == item_id,
                )
            )
        elif kind == RELATED_MEMBER:
            if sid == other:
                continue
            mine = scored[sid]
            mine[other] = max(score or 0.0, mine.get(other, float("-inf")))
            related[other][item_id] = RelatedMember(
                item_id,
                other,
                link,
                title or "",
                published_at,
                member_locale(locale, language) if language else locale,
                canonical_item_id == item_id,
            )
        else:
            out.disclaimers[(policy, locale)] = (text or "", str(version))
    out.stories = sorted(stories.values(), key=lambda s: (s.first_published_at, s.id), reverse=True)
    out.related = {
        sid: [o for o, _ in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))]
        for sid, others in scored.items()
    }
    out.related_members = {sid: list(ms.values()) for sid, ms in related.items()}
    return out


RELATED_PER_STORY = 5
_LOCALE_ORDER = {code: i for i, code in enumerate(LOCALES)}
Json = dict[str, Any]


def iso_utc(naive_utc: datetime) -> str:
    return naive_utc.isoformat() + "Z"


class LegacyReader:
    """The old per-request rendering over the old page statement (see the module docstring)."""

    def __init__(self, engine: sa.Engine, fallbacks: Mapping[str, Chain] = FALLBACKS) -> None:
        self.engine = engine
        self.fallbacks = fallbacks
        self.converter = ScriptConverter()

    def _convert(self, text: str, config: str | None) -> str:
        return self.converter.convert(text, config) if config else text

    def _related_refs(self, related_ids: Sequence[int], locale: str, rows: PageRows) -> list[Json]:
        refs: list[Json] = []
        for rid in related_ids:
            rm = rows.related_members.get(rid)
            choice = choose(rm, locale, self.fallbacks) if rm else None
            if rm is None or choice is None:
                continue
            m = rm[choice.member_index]
            refs.append(
                {
                    "id": rid,
                    "title": self._convert(m.title, choice.converted),
                    "url": m.url,
                    "locale": choice.locale_served,
                }
            )
            if len(refs) == RELATED_PER_STORY:
                break
        return refs

    def _entry(
        self, story: StoryRow, members: list[MemberRow], locale: str, rows: PageRows, *, strict: bool
    ) -> Json | None:
        best = best_by_locale(members)
        choice = choose(members, locale, self.fallbacks, strict=strict, best=best)
        if choice is None:
            return None
        served = members[choice.member_index]
        original = next((m for m in members if m.is_original), None) or min(
            members, key=lambda m: (m.published_at, m.id)
        )
        summary = self._convert(served.summary_html, choice.converted)
        never = chain_for(locale, self.fallbacks).never
        translations = [
            {"locale": loc, "url": members[i].url}
            for loc, i in sorted(best.items(), key=lambda kv: (_LOCALE_ORDER.get(kv[0], 99), kv[0]))
            if loc != choice.locale_served and loc not in never
        ]
        image = served.image or original.image or next((m.image for m in members if m.image), None)
        return {
            "id": story.id,
            "title": self._convert(served.title, choice.converted),
            "summary": summary,
            "summary_text": html_to_text(summary, one_line=True),
            "url": served.url,
            "outlet": {"id": served.outlet_id, "name": served.outlet_name},
            "published_at": iso_utc(story.first_published_at),
            "image": image,
            "tickers": sorted({t for m in members for t in m.tickers}),
            "locale_served": choice.locale_served,
            "converted": choice.converted,
            "pinned": story.pinned,
            "original": {
                "outlet": {"id": original.outlet_id, "name": original.outlet_name},
                "url": original.url,
                "locale": original.effective_locale,
            },
            "translations": translations,
            "related": self._related_refs(rows.related.get(story.id, ()), locale, rows),
        }

    def feed(self, locale: str, tickers: tuple[str, ...] = (), outlet: str | None = None) -> list[Json]:
        """Every entry the old ``/v1/feed`` served for ``locale`` (and filters), newest first."""
        never = chain_for(locale, self.fallbacks).never
        params: dict[str, Any] = {f"ticker_{i}": f'%"{t}"%' for i, t in enumerate(tickers)}
        if outlet is not None:
            params["outlet"] = outlet
        statement = feed_statement(False, len(tickers), outlet is not None, never, 10**6)
        with self.engine.connect() as conn:
            rows = read_page(conn, statement, params)
        items = []
        for story in rows.stories:
            entry = self._entry(story, rows.members[story.id], locale, rows, strict=True)
            if entry is not None:
                items.append(entry)
        return items

    def in_chain(self, story_id: int, locale: str) -> bool:
        """Whether the story has a version in ``locale``'s chain (the default feed's new rule)."""
        with self.engine.connect() as conn:
            rows = read_page(conn, story_statement(), {"story_id": story_id})
        return in_chain(locale, best_by_locale(rows.members[story_id]), self.fallbacks)

    def story(self, story_id: int, locale: str) -> Json | None:
        """The old ``/v1/stories/{id}`` body (without its disclaimer)."""
        with self.engine.connect() as conn:
            rows = read_page(conn, story_statement(), {"story_id": story_id})
        if not rows.stories:
            return None
        members = rows.members[story_id]
        entry = self._entry(rows.stories[0], members, locale, rows, strict=False)
        if entry is None:
            return None
        ordered = sorted(members, key=lambda m: (not m.is_original, m.published_at, m.id))
        entry["locale_requested"] = locale
        entry["canonical"] = entry["original"]
        entry["members"] = [
            {
                "id": m.id,
                "locale": m.effective_locale,
                "url": m.url,
                "title": m.title,
                "outlet": {"id": m.outlet_id, "name": m.outlet_name},
                "published_at": iso_utc(m.published_at),
                "is_original": m.is_original,
            }
            for m in ordered
        ]
        return entry

"""Reading stories for the API: the keyset feed page, one story, and delta-sync changes.

A feed page costs three indexed queries whatever its size (no N+1, no OFFSET):
1. the page — keyset on (first_published_at, id), newest first, ``limit + 1`` stories — joined
   with their live members and each member's outlet;
2. related links of the page's stories (either direction) joined with the related stories'
   live members (title and url only), hidden stories left out;
3. the disclaimer rows of the policies in play.
(``outlet=`` adds a fourth, only when the page is empty, to tell an unknown outlet from none.)
Everything else (locale choice, OpenCC conversion, sanitizing) happens in Python on those rows.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import nh3
import sqlalchemy as sa
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator import LOCALES
from aggregator.models import UTCDateTime
from api.cursor import FeedPosition, TokenSigner
from api.errors import Problem
from api.locales import FALLBACKS, Chain, ScriptConverter, best_by_locale, chain_for, choose, member_locale
from api.schemas import (
    ChangesPage,
    DisclaimerRef,
    FeedChangeRef,
    FeedEntry,
    FeedPage,
    OriginalRef,
    OutletRef,
    RelatedRef,
    StoryDetail,
    StoryMember,
    Translation,
)

STORY = SQLModel.metadata.tables["story"]
ITEM = SQLModel.metadata.tables["item"]
SOURCE = SQLModel.metadata.tables["source"]
OUTLET = SQLModel.metadata.tables["outlet"]
RELATED = SQLModel.metadata.tables["relatedstory"]
DISCLAIMER = SQLModel.metadata.tables["disclaimer"]
FEEDCHANGE = SQLModel.metadata.tables["feedchange"]

RELATED_PER_STORY = 5
CHANGES_PER_PAGE = 1000
SEED_VERSION = "seed-1"
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_LOCALE_ORDER = {code: i for i, code in enumerate(LOCALES)}


@dataclass(frozen=True)
class FeedQuery:
    """A validated feed request."""

    locale: str
    after: FeedPosition | None
    limit: int
    tickers: tuple[str, ...] = ()
    outlet: str | None = None


@dataclass(slots=True)
class MemberRow:
    """A live (not tombstoned) member of a story, as locale choice and rendering need it."""

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


def plain_text(sanitized_html: str) -> str:
    """Text of already sanitized HTML (tags become spaces; entities are decoded)."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", sanitized_html))).strip()


def _live_member(never: frozenset[str]) -> sa.Exists:
    cond = [ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false()]
    if never:
        cond.append(ITEM.c.locale.not_in(sorted(never)))
    return sa.exists().where(*cond)


def _with_members(stories: sa.Select[Any]) -> sa.Select[Any]:
    """The stories ``stories`` selects (ordered, limited), joined with their live members."""
    page = stories.subquery("page")
    return sa.select(
        page.c.id.label("sid"),
        page.c.first_published_at,
        page.c.pinned,
        page.c.canonical_item_id,
        ITEM.c.id,
        ITEM.c.link,
        ITEM.c.title,
        ITEM.c.summary_html,
        ITEM.c.published_at,
        ITEM.c.image,
        ITEM.c.locale,
        ITEM.c.language,
        ITEM.c.tickers,
        SOURCE.c.outlet_id,
        OUTLET.c.name,
        OUTLET.c.disclaimer_policy,
    ).select_from(
        page.join(ITEM, sa.and_(ITEM.c.story_id == page.c.id, ITEM.c.tombstone == sa.false()))
        .join(SOURCE, SOURCE.c.id == ITEM.c.source_id)
        .join(OUTLET, OUTLET.c.id == SOURCE.c.outlet_id)
    )


_STORY_COLUMNS = (STORY.c.id, STORY.c.first_published_at, STORY.c.pinned, STORY.c.canonical_item_id)


@lru_cache(maxsize=256)
def feed_statement(keyset: bool, tickers: int, by_outlet: bool, never: frozenset[str]) -> sa.Select[Any]:
    """The page query of one request shape, built once: SQLAlchemy statement construction costs
    more CPU than the database spends running it. Bind ``limit`` and, by shape, ``after_ts``/
    ``after_id``, ``ticker_0``… (LIKE patterns) and ``outlet``."""
    q = sa.select(*_STORY_COLUMNS).where(STORY.c.hidden == sa.false(), _live_member(never))
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
        sa.bindparam("limit", type_=sa.Integer())
    )
    return _with_members(q)


@lru_cache(maxsize=1)
def story_statement() -> sa.Select[Any]:
    """One visible story with its live members; bind ``story_id``."""
    return _with_members(
        sa.select(*_STORY_COLUMNS).where(STORY.c.id == sa.bindparam("story_id"), STORY.c.hidden == sa.false())
    )


@lru_cache(maxsize=1)
def related_statement() -> sa.Select[Any]:
    """Related links of stories ``ids`` (either direction) with the linked stories' live members."""
    ids: sa.BindParameter[int] = sa.bindparam("ids", expanding=True)
    pairs = sa.union_all(
        sa.select(
            RELATED.c.story_id.label("mine"), RELATED.c.related_id.label("other"), RELATED.c.score
        ).where(RELATED.c.story_id.in_(ids)),
        sa.select(RELATED.c.related_id, RELATED.c.story_id, RELATED.c.score).where(
            RELATED.c.related_id.in_(ids)
        ),
    ).subquery("pairs")
    return sa.select(
        pairs.c.mine,
        pairs.c.other,
        pairs.c.score,
        ITEM.c.id,
        ITEM.c.link,
        ITEM.c.title,
        ITEM.c.published_at,
        ITEM.c.locale,
        ITEM.c.language,
        STORY.c.canonical_item_id,
    ).select_from(
        pairs.join(STORY, sa.and_(STORY.c.id == pairs.c.other, STORY.c.hidden == sa.false())).join(
            ITEM, sa.and_(ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false())
        )
    )


@lru_cache(maxsize=1)
def disclaimer_statement() -> sa.Select[Any]:
    return (
        sa.select(DISCLAIMER.c.policy, DISCLAIMER.c.locale, DISCLAIMER.c.version, DISCLAIMER.c.text)
        .where(DISCLAIMER.c.policy.in_(sa.bindparam("policies", expanding=True)))
        .order_by(DISCLAIMER.c.version)
    )


class FeedReader:
    """Builds the API's response models from the database; one instance per app, thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        signer: TokenSigner,
        *,
        fallbacks: Mapping[str, Chain] = FALLBACKS,
        seed_disclaimers: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.fallbacks = fallbacks
        self.seed_disclaimers = dict(seed_disclaimers or {})
        self.converter = ScriptConverter()

    # ---- queries -------------------------------------------------------------------------

    def _page(
        self, conn: sa.Connection, statement: sa.Select[Any], params: dict[str, Any]
    ) -> tuple[list[StoryRow], dict[int, list[MemberRow]]]:
        """Stories and their live members from a ``_with_members`` statement: one round trip."""
        rows: dict[int, StoryRow] = {}
        members: dict[int, list[MemberRow]] = defaultdict(list)
        for r in conn.execute(statement, params).all():
            if r.sid not in rows:
                rows[r.sid] = StoryRow(r.sid, r.first_published_at, r.pinned)
            members[r.sid].append(
                MemberRow(
                    id=r.id,
                    story_id=r.sid,
                    url=r.link,
                    title=r.title or "",
                    summary_html=r.summary_html or "",
                    published_at=r.published_at,
                    image=r.image,
                    effective_locale=member_locale(r.locale, r.language),
                    tickers=tuple(t for t in (r.tickers or ()) if isinstance(t, str)),
                    outlet_id=r.outlet_id,
                    outlet_name=r.name,
                    policy=r.disclaimer_policy,
                    is_original=r.canonical_item_id == r.id,
                )
            )
        ordered = sorted(rows.values(), key=lambda row: (row.first_published_at, row.id), reverse=True)
        return ordered, members

    def _related(
        self, conn: sa.Connection, story_ids: Sequence[int]
    ) -> tuple[dict[int, list[int]], dict[int, list[RelatedMember]]]:
        """Visible related stories of each story, most related first (a link counts both ways), and
        their live members: one round trip."""
        if not story_ids:
            return {}, {}
        ids = sorted(set(story_ids))
        scored: dict[int, dict[int, float]] = defaultdict(dict)
        members: dict[int, dict[int, RelatedMember]] = defaultdict(dict)
        for r in conn.execute(related_statement(), {"ids": ids}).all():
            if r.mine == r.other:
                continue
            scored[r.mine][r.other] = max(r.score or 0.0, scored[r.mine].get(r.other, float("-inf")))
            members[r.other][r.id] = RelatedMember(
                id=r.id,
                story_id=r.other,
                url=r.link,
                title=r.title or "",
                published_at=r.published_at,
                effective_locale=member_locale(r.locale, r.language),
                is_original=r.canonical_item_id == r.id,
            )
        ranked = {
            sid: [o for o, _ in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))]
            for sid, others in scored.items()
        }
        return ranked, {sid: list(ms.values()) for sid, ms in members.items()}

    def _disclaimer_rows(
        self, conn: sa.Connection, policies: Iterable[str]
    ) -> dict[tuple[str, str], DisclaimerRef]:
        wanted = sorted(set(policies))
        if not wanted:
            return {}
        return {
            (p, loc): DisclaimerRef(text=text, version=str(version), locale=loc)
            for p, loc, version, text in conn.execute(disclaimer_statement(), {"policies": wanted})
        }

    # ---- rendering -----------------------------------------------------------------------

    def _disclaimer(
        self, policy: str, locale: str, rows: Mapping[tuple[str, str], DisclaimerRef]
    ) -> DisclaimerRef | None:
        """The newest editors' text for (policy, locale), else the bundled one; then English."""
        for loc in dict.fromkeys((locale, "en")):
            row = rows.get((policy, loc))
            if row is not None:
                return row if row.text.strip() else None
            seed = self.seed_disclaimers.get((policy, loc))
            if seed is not None:
                return DisclaimerRef(text=seed, version=SEED_VERSION, locale=loc) if seed.strip() else None
        return None

    def _convert(self, text: str, config: str | None) -> str:
        return self.converter.convert(text, config) if config else text

    def _related_refs(
        self, related_ids: Sequence[int], locale: str, members: Mapping[int, list[RelatedMember]]
    ) -> list[RelatedRef]:
        refs: list[RelatedRef] = []
        for rid in related_ids:
            rm = members.get(rid)
            choice = choose(rm, locale, self.fallbacks) if rm else None
            if rm is None or choice is None:
                continue
            m = rm[choice.member_index]
            refs.append(
                RelatedRef(
                    id=rid,
                    title=self._convert(m.title, choice.converted),
                    url=m.url,
                    locale=choice.locale_served,
                )
            )
            if len(refs) == RELATED_PER_STORY:
                break
        return refs

    def _entry_parts(
        self,
        story_id: int,
        first_published_at: datetime,
        pinned: bool,
        members: list[MemberRow],
        locale: str,
        related: list[RelatedRef],
        disclaimers: Mapping[tuple[str, str], DisclaimerRef],
        *,
        strict: bool,
    ) -> dict[str, object] | None:
        choice = choose(members, locale, self.fallbacks, strict=strict)
        if choice is None:
            return None
        served = members[choice.member_index]
        original = next((m for m in members if m.is_original), None) or min(
            members, key=lambda m: (m.published_at, m.id)
        )
        summary = self._convert(nh3.clean(served.summary_html), choice.converted)
        never = chain_for(locale, self.fallbacks).never
        best = best_by_locale(members)
        translations = [
            Translation(locale=loc, url=members[i].url)
            for loc, i in sorted(best.items(), key=lambda kv: (_LOCALE_ORDER.get(kv[0], 99), kv[0]))
            if loc != choice.locale_served and loc not in never
        ]
        image = served.image or original.image or next((m.image for m in members if m.image), None)
        return {
            "id": story_id,
            "title": self._convert(served.title, choice.converted),
            "summary": summary,
            "summary_text": plain_text(summary),
            "url": served.url,
            "outlet": OutletRef(id=served.outlet_id, name=served.outlet_name),
            "published_at": first_published_at,
            "image": image,
            "tickers": sorted({t for m in members for t in m.tickers}),
            "locale_served": choice.locale_served,
            "converted": choice.converted,
            "pinned": pinned,
            "original": OriginalRef(
                outlet=OutletRef(id=original.outlet_id, name=original.outlet_name),
                url=original.url,
                locale=original.effective_locale,
            ),
            "translations": translations,
            "related": related,
            "disclaimer": self._disclaimer(served.policy, choice.locale_served, disclaimers),
        }

    def _related_for_page(
        self, conn: sa.Connection, story_ids: Sequence[int], locale: str
    ) -> dict[int, list[RelatedRef]]:
        related_ids, rel_members = self._related(conn, story_ids)
        return {sid: self._related_refs(ids, locale, rel_members) for sid, ids in related_ids.items()}

    # ---- endpoints -----------------------------------------------------------------------

    def feed_page(self, query: FeedQuery) -> FeedPage | Problem:
        never = chain_for(query.locale, self.fallbacks).never
        with self.engine.connect() as conn:
            params: dict[str, Any] = {"limit": query.limit + 1}
            if query.after is not None:
                params["after_ts"] = query.after.published_at
                params["after_id"] = query.after.story_id
            for i, ticker in enumerate(query.tickers):
                params[f"ticker_{i}"] = f'%"{ticker}"%'
            if query.outlet is not None:
                params["outlet"] = query.outlet
            statement = feed_statement(
                query.after is not None, len(query.tickers), query.outlet is not None, never
            )
            rows, members = self._page(conn, statement, params)
            if not rows and query.outlet is not None:
                known = conn.execute(sa.select(OUTLET.c.id).where(OUTLET.c.id == query.outlet)).first()
                if known is None:
                    return Problem(400, "unknown_outlet", f"unknown outlet {query.outlet!r}")
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            ids = [r.id for r in rows]
            related = self._related_for_page(conn, ids, query.locale)
            disclaimers = self._disclaimer_rows(conn, {m.policy for ms in members.values() for m in ms})
        items = []
        for r in rows:
            parts = self._entry_parts(
                r.id,
                r.first_published_at,
                r.pinned,
                members.get(r.id, []),
                query.locale,
                related.get(r.id, []),
                disclaimers,
                strict=True,
            )
            if parts is not None:
                items.append(FeedEntry.model_validate(parts))
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = self.signer.feed_cursor(FeedPosition(last.first_published_at, last.id))
        return FeedPage(items=items, next_cursor=next_cursor, locale_requested=query.locale)

    def story(self, story_id: int, locale: str) -> StoryDetail | None:
        with self.engine.connect() as conn:
            rows, by_story = self._page(conn, story_statement(), {"story_id": story_id})
            if not rows:
                return None
            row, members = rows[0], by_story[story_id]
            related = self._related_for_page(conn, [story_id], locale)
            disclaimers = self._disclaimer_rows(conn, {m.policy for m in members})
        parts = self._entry_parts(
            story_id,
            row.first_published_at,
            row.pinned,
            members,
            locale,
            related.get(story_id, []),
            disclaimers,
            strict=False,
        )
        if parts is None:
            return None
        ordered = sorted(members, key=lambda m: (not m.is_original, m.published_at, m.id))
        parts["locale_requested"] = locale
        parts["canonical"] = parts["original"]
        parts["members"] = [
            StoryMember(
                id=m.id,
                locale=m.effective_locale,
                url=m.url,
                title=m.title,
                outlet=OutletRef(id=m.outlet_id, name=m.outlet_name),
                published_at=m.published_at,
                is_original=m.is_original,
            )
            for m in ordered
        ]
        return StoryDetail.model_validate(parts)

    def changes(self, since: int | None, locale: str) -> ChangesPage:
        """Stories changed after change ``since``; without it, a token for now and no changes.

        Each story is reported once with its *current* state (visible in this locale → upsert,
        else removed), whatever the logged change said: the log says what to look at, the tables
        say what is true. Caveat: ids come from a sequence, so on PostgreSQL a change committed
        late with a lower id than one already handed out can be missed by a client that synced in
        between; writers that log changes should keep their transactions short.
        """
        never = chain_for(locale, self.fallbacks).never
        with self.engine.connect() as conn:
            if since is None:
                newest = conn.execute(sa.select(sa.func.max(FEEDCHANGE.c.id))).scalar()
                return ChangesPage(
                    changes=[], next_since=self.signer.since_token(newest or 0), has_more=False
                )
            rows = conn.execute(
                sa.select(FEEDCHANGE.c.id, FEEDCHANGE.c.story_id)
                .where(FEEDCHANGE.c.id > since)
                .order_by(FEEDCHANGE.c.id)
                .limit(CHANGES_PER_PAGE + 1)
            ).all()
            has_more = len(rows) > CHANGES_PER_PAGE
            rows = rows[:CHANGES_PER_PAGE]
            latest: dict[int, int] = {}
            for change_id, story_id in rows:
                latest[story_id] = change_id
            visible: set[int] = set()
            if latest:
                visible = {
                    r[0]
                    for r in conn.execute(
                        sa.select(STORY.c.id).where(
                            STORY.c.id.in_(sorted(latest)),
                            STORY.c.hidden == sa.false(),
                            _live_member(never),
                        )
                    )
                }
        changes = [
            FeedChangeRef(id=sid, change="upsert" if sid in visible else "removed")
            for sid, _ in sorted(latest.items(), key=lambda kv: kv[1])
        ]
        next_since = rows[-1][0] if rows else since
        return ChangesPage(changes=changes, next_since=self.signer.since_token(next_since), has_more=has_more)

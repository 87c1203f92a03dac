"""Reading stories for the API: the keyset feed page, one story, and delta-sync changes.

One job a module: ``api.feed_statements`` builds the SQL, ``api.dbapi`` runs it on the driver,
``api.feed_rows`` groups the rows per story, and this module renders the response bodies.

A feed page (or one story) is **one statement, one round trip**, whatever its size (no N+1, no
OFFSET). A CTE ``page`` picks the stories — keyset on (first_published_at, id), newest first,
``limit + 1`` — and three parts are stacked with UNION ALL, told apart by their ``kind``:

0. ``MEMBER`` — the page's stories joined with their live members and each member's outlet;
1. ``RELATED_MEMBER`` — related links of the page's stories (either direction) joined with the
   related stories' live members (title and url only), hidden stories left out;
2. ``DISCLAIMER_ROW`` — the newest version of every (policy, locale) disclaimer.

(``outlet=`` adds a second statement, only when the page is empty, to tell an unknown outlet from
none.) Everything else (locale choice, OpenCC conversion, sanitizing) happens in Python on those
rows, and the response is built as plain dicts, encoded once by the route: ``api.schemas`` is the
documented contract, and the tests validate bodies against it.

Why it is shaped like this — an uncached page must cost a millisecond or two of CPU, not ten:

* LIMIT is a literal (one statement per limit), so PostgreSQL keeps a generic plan for the
  prepared statement; a bound LIMIT made it plan every execution (~1 ms of server CPU).
* On PostgreSQL reads run in autocommit (no BEGIN/ROLLBACK round trips). One statement sees one
  snapshot, so the page, its related links and its disclaimers are consistent with each other.
* Values come back plain: naive UTC datetimes (formatted as pydantic would, ``…Z``), tickers as
  their JSON text parsed through a small cache, instead of per-value type decorators.
* Sanitizing, plain text and OpenCC conversion are pure functions of their input, so they are
  memoized per process (bounded LRU); nothing else is kept between requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import nh3
import sqlalchemy as sa

from aggregator.normalize.markup import html_to_text
from api.cursor import FeedPosition, TokenSigner
from api.errors import Problem
from api.feed_rows import MemberRow, PageRows, StoryRow, read_page
from api.feed_statements import FEEDCHANGE, OUTLET, STORY, feed_statement, live_member, story_statement
from api.locales import FALLBACKS, Chain, ScriptConverter, best_by_locale, chain_for, choose
from core.locales import LOCALES

RELATED_PER_STORY = 5
CHANGES_PER_PAGE = 1000
SEED_VERSION = "seed-1"
SUMMARY_CACHE = 4096
"""Sanitized summaries kept per process: a few pages of every locale's feed."""
_LOCALE_ORDER = {code: i for i, code in enumerate(LOCALES)}

Json = dict[str, Any]
"""A response body (or part of one) as plain JSON-able values, in the shape ``api.schemas`` documents."""


@dataclass(frozen=True)
class FeedQuery:
    """A validated feed request."""

    locale: str
    after: FeedPosition | None
    limit: int
    tickers: tuple[str, ...] = ()
    outlet: str | None = None


def plain_text(sanitized_html: str) -> str:
    """Text of already sanitized HTML on one line (tags become spaces; entities are decoded)."""
    return html_to_text(sanitized_html, one_line=True)


def iso_utc(naive_utc: datetime) -> str:
    """``2026-11-25T09:30:00Z``: the text pydantic gives an aware UTC datetime."""
    return naive_utc.isoformat() + "Z"


class FeedReader:
    """Builds the API's response bodies (plain dicts) from the database; one per app, thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        signer: TokenSigner,
        *,
        fallbacks: Mapping[str, Chain] = FALLBACKS,
        seed_disclaimers: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.engine = (
            engine
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.signer = signer
        self.fallbacks = fallbacks
        self.seed_disclaimers = dict(seed_disclaimers or {})
        self.converter = ScriptConverter()
        self._summary = lru_cache(maxsize=SUMMARY_CACHE)(self._render_summary)

    # ---- rendering -----------------------------------------------------------------------

    def _render_summary(self, summary_html: str, config: str | None) -> tuple[str, str]:
        """(sanitized HTML in the served script, its plain text); memoized in ``self._summary``."""
        summary = nh3.clean(summary_html)
        if config:
            summary = self.converter.convert(summary, config)
        return summary, plain_text(summary)

    def _convert(self, text: str, config: str | None) -> str:
        return self.converter.convert(text, config) if config else text

    def _disclaimer(
        self, policy: str, locale: str, rows: Mapping[tuple[str, str], tuple[str, str]]
    ) -> Json | None:
        """The newest editors' text for (policy, locale), else the bundled one; then English."""
        for loc in (locale, "en") if locale != "en" else ("en",):
            row = rows.get((policy, loc))
            if row is not None:
                text, version = row
                return {"text": text, "version": version, "locale": loc} if text.strip() else None
            seed = self.seed_disclaimers.get((policy, loc))
            if seed is not None:
                return {"text": seed, "version": SEED_VERSION, "locale": loc} if seed.strip() else None
        return None

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
        self,
        story: StoryRow,
        members: list[MemberRow],
        locale: str,
        rows: PageRows,
        disclaimers: dict[tuple[str, str], Json | None],
        *,
        strict: bool,
        now: datetime,
    ) -> Json | None:
        """One story as a ``FeedEntry`` body; None when it cannot be served in ``locale``."""
        best = best_by_locale(members)
        choice = choose(members, locale, self.fallbacks, strict=strict, best=best)
        if choice is None:
            return None
        served = members[choice.member_index]
        original = next((m for m in members if m.is_original), None) or min(
            members, key=lambda m: (m.published_at, m.id)
        )
        summary, summary_text = self._summary(served.summary_html, choice.converted)
        never = chain_for(locale, self.fallbacks).never
        translations = [
            {"locale": loc, "url": members[i].url}
            for loc, i in sorted(best.items(), key=lambda kv: (_LOCALE_ORDER.get(kv[0], 99), kv[0]))
            if loc != choice.locale_served and loc not in never
        ]
        image = served.image or original.image or next((m.image for m in members if m.image), None)
        key = (served.policy, choice.locale_served)
        if key in disclaimers:
            disclaimer = disclaimers[key]
        else:
            disclaimer = disclaimers[key] = self._disclaimer(*key, rows.disclaimers)
        return {
            "id": story.id,
            "title": story.titles.get(choice.locale_served) or self._convert(served.title, choice.converted),
            "summary": summary,
            "summary_text": summary_text,
            "url": served.url,
            "outlet": {"id": served.outlet_id, "name": served.outlet_name},
            "published_at": iso_utc(story.first_published_at),
            "image": image,
            "tickers": sorted({t for m in members for t in m.tickers}),
            "locale_served": choice.locale_served,
            "converted": choice.converted,
            "pinned": story.pin_active(locale, now),
            "original": {
                "outlet": {"id": original.outlet_id, "name": original.outlet_name},
                "url": original.url,
                "locale": original.effective_locale,
            },
            "translations": translations,
            "related": self._related_refs(rows.related.get(story.id, ()), locale, rows),
            "disclaimer": disclaimer,
        }

    # ---- endpoints -----------------------------------------------------------------------

    def feed_page(self, query: FeedQuery) -> Json | Problem:
        """A ``FeedPage`` body."""
        never = chain_for(query.locale, self.fallbacks).never
        now = datetime.now(UTC)
        params: dict[str, Any] = {"now": now, "pin_locale": query.locale}
        if query.after is not None:
            params["after_ts"] = query.after.published_at
            params["after_id"] = query.after.story_id
        for i, ticker in enumerate(query.tickers):
            params[f"ticker_{i}"] = f'%"{ticker}"%'
        if query.outlet is not None:
            params["outlet"] = query.outlet
        statement = feed_statement(
            query.after is not None, len(query.tickers), query.outlet is not None, never, query.limit + 1
        )
        with self.engine.connect() as conn:
            rows = read_page(conn, statement, params)
            top: PageRows | None = None
            if query.after is None:
                pinned = feed_statement(False, len(query.tickers), query.outlet is not None, never, 50, True)
                top = read_page(conn, pinned, params)
                if not top.stories:
                    top = None
            if not rows.stories and top is None and query.outlet is not None:
                known = conn.execute(sa.select(OUTLET.c.id).where(OUTLET.c.id == query.outlet)).first()
                if known is None:
                    return Problem(400, "unknown_outlet", f"unknown outlet {query.outlet!r}")
        more = len(rows.stories) > query.limit
        page = rows.stories[: query.limit]
        items = []
        disclaimers: dict[tuple[str, str], Json | None] = {}
        naive_now = now.replace(tzinfo=None)
        for story_rows, stories in ((top, top.stories if top else []), (rows, page)):
            if story_rows is None:
                continue
            for story in stories:
                entry = self._entry(
                    story,
                    story_rows.members[story.id],
                    query.locale,
                    story_rows,
                    disclaimers,
                    strict=True,
                    now=naive_now,
                )
                if entry is not None:
                    items.append(entry)
        next_cursor = None
        if more and page:
            last = page[-1]
            next_cursor = self.signer.feed_cursor(
                FeedPosition(last.first_published_at.replace(tzinfo=UTC), last.id)
            )
        return {"items": items, "next_cursor": next_cursor, "locale_requested": query.locale}

    def story(self, story_id: int, locale: str) -> Json | None:
        """A ``StoryDetail`` body; None when the story is missing, hidden or has no live member."""
        with self.engine.connect() as conn:
            rows = read_page(conn, story_statement(), {"story_id": story_id})
        if not rows.stories:
            return None
        members = rows.members[story_id]
        entry = self._entry(
            rows.stories[0],
            members,
            locale,
            rows,
            {},
            strict=False,
            now=datetime.now(UTC).replace(tzinfo=None),
        )
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

    def changes(self, since: int | None, locale: str) -> Json:
        """A ``ChangesPage`` body: stories changed after change ``since``; without it, a token for
        now and no changes.

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
                return {"changes": [], "next_since": self.signer.since_token(newest or 0), "has_more": False}
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
                            live_member(never),
                        )
                    )
                }
        changes = [
            {"id": sid, "change": "upsert" if sid in visible else "removed"}
            for sid, _ in sorted(latest.items(), key=lambda kv: kv[1])
        ]
        next_since = rows[-1][0] if rows else since
        return {"changes": changes, "next_since": self.signer.since_token(next_since), "has_more": has_more}

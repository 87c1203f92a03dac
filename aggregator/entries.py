"""Precomputed localized feed entries: what each locale's feed shows for a story, written ahead of reads.

Any writer that changes a story — dedupe, a re-poll that updates a member, an editor's merge,
split, hide or pin — calls :func:`refresh_story_entries` inside its own transaction, with the ids
of the stories it changed. For each of them, and each story related to them (their entries show
its title), it rewrites:

* ``storyentry``: one row per (locale, story) with the entry that locale's feed serves — the
  member chosen through the fallback table (``core.fallbacks``), its title and summary (OpenCC
  conversion done here), url, outlet, image, tickers, original, translations, the top related
  links in the reader's locale, the flags — as a JSON object missing its closing brace: the API
  appends the disclaimer for the *reader's* locale (disclaimers are versioned by editors and read
  with the page). ``reach`` says which feeds list it (see :class:`~aggregator.models.StoryEntry`);
* ``storyticker`` / ``storyoutlet``: the story's tickers and outlets with its publication time,
  so a filtered page is an index range scan whatever the filter matches.

A hidden or deleted story (or one without a live member) gets no rows. So a page is one range
scan on (locale, reach, published_at, story_id) plus joining ready fragments: no locale choice,
sanitizing, OpenCC or related-member join per request.

The fallback table the entries were written with is kept in ``appstate`` (:data:`TABLE_KEY`),
so every writer uses the table the API was configured with; :func:`ensure_entries` (run by the
API at start) rewrites every story when that table, or :data:`RENDER_VERSION`, changed.

Every write of entries also says, in the same transaction, what it changed (:func:`touch_pages`):
the locales and published-at times of the entries it removed and wrote (a pinned entry: its whole
locale; an editor's action or a full rewrite: everything). On SQLite that is rows of
``pagechange``, on PostgreSQL a ``NOTIFY`` on :data:`PAGES_CHANNEL` carrying them (delivered at
commit). The API keeps built pages until a change meets a page's locale and published-at range
(``api.caching.PageCache``), so a page never outlives the entries it was built from, and a write of
one story leaves the pages of other times and locales kept.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pydantic_core
import sqlalchemy as sa
from sqlmodel import Session

from aggregator.appstate import get_state, put_state
from aggregator.db import DEDUPE_LOCK_KEY
from aggregator.dedupe.policy import RELATED_PER_STORY  # the cap dedupe keeps, served as is
from aggregator.models import (
    Item,
    Outlet,
    PageChange,
    RelatedStory,
    Source,
    Story,
    StoryEntry,
    StoryOutlet,
    StoryTicker,
)
from aggregator.normalize.markup import html_to_text
from core.fallbacks import (
    FALLBACKS,
    Chain,
    ScriptConverter,
    best_by_locale,
    chain_for,
    choose,
    format_fallbacks,
    in_chain,
    member_locale,
    parse_fallbacks,
)
from core.locales import LOCALES

RENDER_VERSION = "2"
"""Bumped when what an entry holds changes: the API then rewrites every entry at start."""
TABLE_KEY = "entries_fallbacks"
"""``appstate`` key: the fallback table (``BABELWIRE_LOCALE_FALLBACKS`` syntax) the entries use."""
VERSION_KEY = "entries_version"
"""``appstate`` key: RENDER_VERSION and a hash of the table, as of the last full rewrite."""
PAGES_CHANNEL = "babelwire_pages"
"""PostgreSQL ``NOTIFY`` channel of the changes of entries (payload: :func:`page_changes_payload`)."""
PAGE_CHANGES_KEPT = 4096
"""``pagechange`` rows kept (SQLite): an API process further behind drops every kept page."""
SPANS_PER_LOCALE = 32
"""A write that changes more published-at times in one locale records one range for them."""
UNTRANSLATED_KEY = "~u"
"""A change's feed key is the locale for an entry its default feed lists, and the locale with this
suffix for one only ``untranslated=include`` lists (``api.caching.Span``)."""
NOTIFY_MAX_CHARS = 7000
"""PostgreSQL's payload limit is 8000 bytes: a longer list is coarsened, at worst to "everything"."""
MAX_TICKER_CHARS = 16
PIN_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
"""``storyentry.pinned_until`` of a pin without an end."""
IN_CHAIN, UNTRANSLATED, BY_ID_ONLY = 0, 1, 2
UNPINNED, PINNED = ',"pinned":false,', ',"pinned":true,'
"""The pin flag as a stored body has it, and as the API gives a pinned entry: outside a string
value (where quotes are escaped) only the entry's own flag can read like this."""
CHUNK = 400

_MODELS: dict[str, Any] = {
    "story": Story, "item": Item, "source": Source, "outlet": Outlet, "related": RelatedStory,
    "entry": StoryEntry, "ticker": StoryTicker, "outlet_row": StoryOutlet, "change": PageChange,
}  # fmt: skip
_T = {name: cast(sa.Table, model.__table__) for name, model in _MODELS.items()}
_LOCALE_ORDER = {code: i for i, code in enumerate(LOCALES)}
_converter = ScriptConverter()


@dataclass(slots=True)
class Member:
    """A live member of a story, as locale choice and rendering need it."""

    id: int
    url: str | None
    title: str
    summary_html: str
    summary_text: str
    published_at: datetime
    image: str | None
    effective_locale: str
    tickers: tuple[str, ...]
    outlet_id: str
    outlet_name: str
    policy: str
    is_original: bool


@dataclass(slots=True)
class RelatedMember:
    """A live member of a related story: enough to link to it in the reader's locale."""

    id: int
    url: str | None
    title: str
    published_at: datetime
    effective_locale: str
    is_original: bool


@dataclass(frozen=True, slots=True)
class Row:
    """One ``storyentry`` row."""

    locale: str
    story_id: int
    published_at: datetime
    reach: int
    policy: str
    body: str
    pinned_until: datetime | None = None
    outlet_id: str | None = None
    """The served member's outlet."""


@dataclass(frozen=True, slots=True)
class Pin:
    """An editor's pin: on top of ``locale``'s feed (None: every locale) until ``until``."""

    until: datetime
    locale: str | None

    def until_in(self, locale: str) -> datetime | None:
        return self.until if self.locale is None or self.locale == locale else None


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T09:30:00Z``: the text pydantic gives an aware UTC datetime."""
    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return naive.isoformat() + "Z"


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (a naive one, as SQLite gives back, is taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _conn(session: Session | sa.Connection) -> sa.Connection:
    return session.connection() if isinstance(session, Session) else session


# ---- the fallback table the entries are written with --------------------------------------------


def stored_table(session: Session | sa.Connection) -> Mapping[str, Chain]:
    """The fallback table the API keeps in ``appstate`` (the documented one until an API started)."""
    text = get_state(_conn(session), TABLE_KEY)
    return FALLBACKS if text is None else parse_fallbacks(text, FALLBACKS)


def ensure_entries(engine: sa.Engine, table: Mapping[str, Chain]) -> bool:
    """Make the stored entries the ones ``table`` gives: when the table or :data:`RENDER_VERSION`
    differs from those of the last full rewrite (or none happened: a database migrated from before
    the entries existed), keep the table and rewrite every story's entries, in one transaction.
    Serialized with dedupe on PostgreSQL. True when it rewrote."""
    text = format_fallbacks(table)
    version = RENDER_VERSION + ":" + hashlib.sha256(text.encode()).hexdigest()[:16]
    with engine.connect() as conn:
        if get_state(conn, VERSION_KEY) == version:
            return False
    with engine.begin() as conn:
        lock_story_writers(conn)
        if get_state(conn, VERSION_KEY) == version:
            return False
        put_state(conn, TABLE_KEY, text)
        for name in ("entry", "ticker", "outlet_row"):
            conn.execute(sa.delete(_T[name]))
        story = _T["story"]
        ids = [r[0] for r in conn.execute(sa.select(story.c.id).where(story.c.hidden == sa.false()))]
        _write(conn, ids, table)
        put_state(conn, VERSION_KEY, version)
        touch_pages(conn)
    return True


# ---- writing ----------------------------------------------------------------------------------------


def related_neighbors(session: Session | sa.Connection, story_ids: Iterable[int]) -> set[int]:
    """Stories linked as related to any of ``story_ids`` (either direction)."""
    conn = _conn(session)
    related = _T["related"]
    ids = sorted(set(story_ids))
    out: set[int] = set()
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        for a, b in conn.execute(
            sa.select(related.c.story_id, related.c.related_id).where(
                sa.or_(related.c.story_id.in_(chunk), related.c.related_id.in_(chunk))
            )
        ):
            out.update((a, b))
    return out


def lock_story_writers(session: Session | sa.Connection) -> None:
    """On PostgreSQL, wait for the story writers' transaction lock (dedupe's): two transactions that
    rewrite one story's rows at once would collide on their primary keys. A writer that also
    updates items should take it before touching them (dedupe rewrites items' cached features), so
    the two never wait for each other's locks. Re-entrant within a transaction; nothing on SQLite,
    where writers are serialized already."""
    conn = _conn(session)
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": DEDUPE_LOCK_KEY})


def refresh_story_entries(
    session: Session | sa.Connection, story_ids: Iterable[int], *, table: Mapping[str, Chain] | None = None
) -> int:
    """Rewrite the entries of ``story_ids`` and of the stories related to them, inside the caller's
    transaction (an ORM session is flushed first). Deleted, hidden or memberless stories lose their
    rows. Returns how many stories were rewritten."""
    if isinstance(session, Session):
        session.flush()
    conn = _conn(session)
    ids = set(story_ids)
    if not ids:
        return 0
    lock_story_writers(conn)
    ids |= related_neighbors(conn, ids)
    if table is None:
        table = stored_table(conn)
    ordered = sorted(ids)
    listed: list[tuple[str, int, datetime, datetime | None]] = []
    entry = _T["entry"]
    for i in range(0, len(ordered), CHUNK):
        chunk = ordered[i : i + CHUNK]
        listed += conn.execute(  # what the pages showed: a page that listed one of them is stale
            sa.select(entry.c.locale, entry.c.reach, entry.c.published_at, entry.c.pinned_until).where(
                entry.c.story_id.in_(chunk), entry.c.reach < BY_ID_ONLY
            )
        ).all()
        for name in ("entry", "ticker", "outlet_row"):
            conn.execute(sa.delete(_T[name]).where(_T[name].c.story_id.in_(chunk)))
    written = _write(conn, ordered, table)
    listed += [(r.locale, r.reach, r.published_at, r.pinned_until) for r in written if r.reach < BY_ID_ONLY]
    touch_pages(conn, listed_spans(listed))
    return len(ordered)


PageSpan = tuple[str | None, datetime | None, datetime | None]
"""(locale, lo, hi): the pages of ``locale`` (None: every locale) whose published-at range meets
[lo, hi] (None: unbounded on that side); times aware UTC."""
EVERYTHING: PageSpan = (None, None, None)


def feed_key(locale: str, reach: int) -> str:
    """The feed key of an entry of ``reach`` listed in ``locale`` (see :data:`UNTRANSLATED_KEY`)."""
    return locale if reach == IN_CHAIN else locale + UNTRANSLATED_KEY


def listed_spans(listed: Iterable[tuple[str, int, datetime, datetime | None]]) -> list[PageSpan]:
    """The spans of listed entries (locale, reach, published_at, pinned_until) a write removed or
    wrote: an entry's own time in its feed (:func:`feed_key`), or that whole feed while it is pinned
    (a first page lists the pinned entries whatever their time)."""
    now = datetime.now(UTC)
    spans: set[PageSpan] = set()
    for locale, reach, published_at, pinned_until in listed:
        key = feed_key(locale, reach)
        if pinned_until is not None and as_utc(pinned_until) > now:
            spans.add((key, None, None))
        else:
            moment = as_utc(published_at)
            spans.add((key, moment, moment))
    return sorted(spans, key=lambda s: (s[0] or "", s[1] or PIN_FOREVER, s[2] or PIN_FOREVER))


def coarsen(spans: Iterable[PageSpan], per_locale: int = SPANS_PER_LOCALE) -> list[PageSpan]:
    """``spans`` with more than ``per_locale`` of one locale merged into one range covering them
    (a range only ever grows: coarser is never staler); anything naming every locale is everything."""
    by_locale: dict[str, list[PageSpan]] = defaultdict(list)
    for span in spans:
        if span[0] is None:
            return [EVERYTHING]
        by_locale[span[0]].append(span)
    out: list[PageSpan] = []
    for locale, found in by_locale.items():
        if len(found) <= per_locale:
            out += found
            continue
        los, his = [s[1] for s in found], [s[2] for s in found]
        lo = None if None in los else min(x for x in los if x is not None)
        hi = None if None in his else max(x for x in his if x is not None)
        out.append((locale, lo, hi))
    return out


def page_changes_payload(spans: Sequence[PageSpan]) -> str:
    """The ``NOTIFY`` payload for ``spans``: a JSON list of [locale, lo, hi] (ISO UTC or null), or
    "" for everything (also when even one range per locale would not fit the limit)."""
    for per_locale in (SPANS_PER_LOCALE, 1):
        spans = coarsen(spans, per_locale)
        if spans == [EVERYTHING]:
            return ""
        payload = json.dumps(
            [
                [loc, None if lo is None else iso_utc(lo), None if hi is None else iso_utc(hi)]
                for loc, lo, hi in spans
            ],
            separators=(",", ":"),
        )
        if len(payload) <= NOTIFY_MAX_CHARS:
            return payload
    return ""


def parse_page_changes(payload: str) -> list[PageSpan]:
    """The spans a ``NOTIFY`` payload names (the reverse of :func:`page_changes_payload`); anything
    unreadable means everything."""
    if not payload:
        return [EVERYTHING]
    try:
        found = json.loads(payload)
        return [
            (
                str(loc),
                None if lo is None else datetime.fromisoformat(lo),
                None if hi is None else datetime.fromisoformat(hi),
            )
            for loc, lo, hi in found
        ]
    except (ValueError, TypeError):
        return [EVERYTHING]


def touch_pages(session: Session | sa.Connection, changed: Iterable[PageSpan] | None = None) -> None:
    """Tell every API process, in the caller's transaction, which kept pages stop being right when
    it commits: those ``changed`` names (None: every page — editors' actions, full rewrites). On
    SQLite rows of ``pagechange`` (the oldest beyond :data:`PAGE_CHANGES_KEPT` pruned); on
    PostgreSQL a ``NOTIFY`` (sent at commit, dropped on rollback). Writers of entries call it; so
    may any writer of what a page shows."""
    conn = _conn(session)
    spans = [EVERYTHING] if changed is None else coarsen(changed)
    if not spans:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": PAGES_CHANNEL, "payload": page_changes_payload(spans)},
        )
        return
    change = _T["change"]
    conn.execute(
        sa.insert(change),
        [
            {
                "locale": loc,
                "lo": None if lo is None else as_utc(lo),
                "hi": None if hi is None else as_utc(hi),
            }
            for loc, lo, hi in spans
        ],
    )
    newest = sa.select(sa.func.max(change.c.seq)).scalar_subquery()
    conn.execute(sa.delete(change).where(change.c.seq <= newest - PAGE_CHANGES_KEPT))


def _write(conn: sa.Connection, story_ids: Sequence[int], table: Mapping[str, Chain]) -> list[Row]:
    """Insert the entries (and filter rows) of ``story_ids``; the entry rows written."""
    written: list[Row] = []
    for i in range(0, len(story_ids), CHUNK):
        chunk = story_ids[i : i + CHUNK]
        entries: list[dict[str, Any]] = []
        tickers: list[dict[str, Any]] = []
        outlets: list[dict[str, Any]] = []
        for story_id, published_at, rows, story_tickers, story_outlets in render_stories(conn, chunk, table):
            written += rows
            entries += [
                {
                    "locale": r.locale,
                    "story_id": r.story_id,
                    "published_at": r.published_at,
                    "reach": r.reach,
                    "policy": r.policy,
                    "body": r.body,
                    "pinned_until": r.pinned_until,
                    "outlet_id": r.outlet_id,
                }
                for r in rows
            ]
            tickers += [
                {"story_id": story_id, "ticker": t, "published_at": published_at} for t in story_tickers
            ]
            outlets += [
                {"story_id": story_id, "outlet_id": o, "published_at": published_at} for o in story_outlets
            ]
        for name, values in (("entry", entries), ("ticker", tickers), ("outlet_row", outlets)):
            if values:
                conn.execute(sa.insert(_T[name]), values)
    return written


def render_stories(
    conn: sa.Connection, story_ids: Sequence[int], table: Mapping[str, Chain]
) -> Iterable[tuple[int, datetime, list[Row], list[str], list[str]]]:
    """For each visible story with a live member among ``story_ids``: (id, first published, its
    entry rows, its tickers, its outlets). Three statements for the whole chunk."""
    story, item, source, outlet, related = (_T[n] for n in ("story", "item", "source", "outlet", "related"))
    stories: dict[int, tuple[datetime, Pin | None, int | None, dict[str, str]]] = {}
    for sid, first, pinned, until, pin_locale, canonical, titles in conn.execute(
        sa.select(
            story.c.id,
            story.c.first_published_at,
            story.c.pinned,
            story.c.pinned_until,
            story.c.pinned_locale,
            story.c.canonical_item_id,
            story.c.titles,
        ).where(story.c.id.in_(story_ids), story.c.hidden == sa.false())
    ):
        pin = None
        if pinned:
            pin = Pin(PIN_FOREVER if until is None else as_utc(until), pin_locale)
        edited = (
            {k: v for k, v in titles.items() if isinstance(v, str) and v} if isinstance(titles, dict) else {}
        )
        stories[sid] = (first, pin, canonical, edited)
    if not stories:
        return
    members: dict[int, list[Member]] = defaultdict(list)
    for r in conn.execute(
        sa.select(
            item.c.id,
            item.c.story_id,
            item.c.link,
            item.c.title,
            item.c.summary_html,
            item.c.summary_text,
            item.c.published_at,
            item.c.image,
            item.c.locale,
            item.c.language,
            item.c.tickers,
            source.c.outlet_id,
            outlet.c.name,
            outlet.c.disclaimer_policy,
        )
        .select_from(
            item.join(source, source.c.id == item.c.source_id).join(outlet, outlet.c.id == source.c.outlet_id)
        )
        .where(item.c.story_id.in_(sorted(stories)), item.c.tombstone == sa.false())
    ):
        (iid, sid, link, title, summary_html, summary_text, published, image, locale, language, raw_tickers,
         outlet_id, outlet_name, policy) = r  # fmt: skip
        summary_html = summary_html or ""
        members[sid].append(
            Member(
                iid,
                link,
                title or "",
                summary_html,
                summary_text or html_to_text(summary_html, one_line=True),
                as_utc(published),
                image,
                member_locale(locale, language) if language else locale,
                tuple(t for t in raw_tickers or () if isinstance(t, str)),
                outlet_id,
                outlet_name,
                policy,
                stories[sid][2] == iid,
            )
        )
    # Related links of the chunk (either direction), strongest first, and their stories' live members.
    scored: dict[int, dict[int, float]] = defaultdict(dict)
    for a, b, score in conn.execute(
        sa.select(related.c.story_id, related.c.related_id, related.c.score).where(
            sa.or_(related.c.story_id.in_(sorted(stories)), related.c.related_id.in_(sorted(stories)))
        )
    ):
        for mine, other in ((a, b), (b, a)):
            if mine in stories and mine != other:
                scored[mine][other] = max(score or 0.0, scored[mine].get(other, float("-inf")))
    others = sorted({o for d in scored.values() for o in d})
    related_members: dict[int, list[RelatedMember]] = defaultdict(list)
    for j in range(0, len(others), CHUNK):
        for iid, sid, link, title, published, locale, language, canonical in conn.execute(
            sa.select(
                item.c.id,
                item.c.story_id,
                item.c.link,
                item.c.title,
                item.c.published_at,
                item.c.locale,
                item.c.language,
                story.c.canonical_item_id,
            )
            .select_from(item.join(story, story.c.id == item.c.story_id))
            .where(
                item.c.story_id.in_(others[j : j + CHUNK]),
                item.c.tombstone == sa.false(),
                story.c.hidden == sa.false(),
            )
        ):
            related_members[sid].append(
                RelatedMember(
                    iid,
                    link,
                    title or "",
                    as_utc(published),
                    member_locale(locale, language) if language else locale,
                    canonical == iid,
                )
            )
    for sid in sorted(stories):
        ms = members.get(sid)
        if not ms:
            continue
        ms.sort(key=lambda m: m.id)
        first = as_utc(stories[sid][0])
        ranked = [o for o, _ in sorted(scored.get(sid, {}).items(), key=lambda kv: (-kv[1], kv[0]))]
        rows = render_story(sid, first, stories[sid][1], ms, ranked, related_members, table, stories[sid][3])
        story_tickers = sorted({t for m in ms for t in m.tickers if len(t) <= MAX_TICKER_CHARS})
        yield sid, first, rows, story_tickers, sorted({m.outlet_id for m in ms})


def _convert(text: str, config: str | None) -> str:
    return _converter.convert(text, config) if config else text


def render_story(
    story_id: int,
    first_published_at: datetime,
    pin: Pin | None,
    members: Sequence[Member],
    related_ids: Sequence[int],
    related_members: Mapping[int, Sequence[RelatedMember]],
    table: Mapping[str, Chain],
    titles: Mapping[str, str] | None = None,
) -> list[Row]:
    """The rows of one story (``members`` non-empty) in every locale's feed.

    An editor's title for the served locale replaces the member's. The body says ``"pinned":
    false`` (:data:`UNPINNED`): a pin ends at a time, so the row's ``pinned_until`` holds it and the
    API sets the flag when reading.

    What does not depend on the locale is worked out once, and locales that would get the same
    entry (same member, conversion, reach, hidden locales and related links) share one encoding."""
    best = best_by_locale(members)
    original = next((m for m in members if m.is_original), None) or min(
        members, key=lambda m: (m.published_at, m.id)
    )
    by_order = sorted(best.items(), key=lambda kv: (_LOCALE_ORDER.get(kv[0], 99), kv[0]))
    any_image = next((m.image for m in members if m.image), None)
    tickers = sorted({t for m in members for t in m.tickers})
    published = iso_utc(first_published_at)
    original_ref = {
        "outlet": {"id": original.outlet_id, "name": original.outlet_name},
        "url": original.url,
        "locale": original.effective_locale,
    }
    related = [(rid, rm) for rid in related_ids if (rm := related_members.get(rid))]
    encoded: dict[tuple[Any, ...], str] = {}
    rows: list[Row] = []
    for locale in LOCALES:
        choice = choose(members, locale, table, strict=True, best=best)
        reach = IN_CHAIN if in_chain(locale, best, table) else UNTRANSLATED
        if choice is None:
            choice = choose(members, locale, table, strict=False, best=best)
            reach = BY_ID_ONLY
        if choice is None:
            continue
        picks: list[tuple[int, Sequence[RelatedMember], Any]] = []
        for rid, rm in related:
            pick = choose(rm, locale, table)
            if pick is not None:
                picks.append((rid, rm, pick))
                if len(picks) == RELATED_PER_STORY:
                    break
        never = chain_for(locale, table).never
        key = (choice, reach, never, tuple((rid, pick) for rid, _, pick in picks))
        body = encoded.get(key)
        if body is None:
            served = members[choice.member_index]
            entry = {
                "id": story_id,
                "title": (titles or {}).get(choice.locale_served) or _convert(served.title, choice.converted),
                "summary": _convert(served.summary_html, choice.converted),
                "summary_text": _convert(served.summary_text, choice.converted),
                "url": served.url,
                "outlet": {"id": served.outlet_id, "name": served.outlet_name},
                "published_at": published,
                "image": served.image or original.image or any_image,
                "tickers": tickers,
                "locale_served": choice.locale_served,
                "converted": choice.converted,
                "pinned": False,
                "untranslated": reach != IN_CHAIN,
                "original": original_ref,
                "translations": [
                    {"locale": loc, "url": members[i].url}
                    for loc, i in by_order
                    if loc != choice.locale_served and loc not in never
                ],
                "related": [
                    {
                        "id": rid,
                        "title": _convert(rm[pick.member_index].title, pick.converted),
                        "url": rm[pick.member_index].url,
                        "locale": pick.locale_served,
                    }
                    for rid, rm, pick in picks
                ],
            }
            body = encoded[key] = pydantic_core.to_json(entry).decode()[:-1]
        rows.append(
            Row(
                locale,
                story_id,
                first_published_at,
                reach,
                members[choice.member_index].policy,
                body,
                pin.until_in(locale) if pin else None,
                members[choice.member_index].outlet_id,
            )
        )
    return rows

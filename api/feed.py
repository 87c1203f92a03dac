"""Reading stories for the API: the keyset feed page, one story, and delta-sync changes.

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

import html
import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
SUMMARY_CACHE = 4096
"""Sanitized summaries kept per process: a few pages of every locale's feed."""
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
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
    pinned_until: datetime | None = None
    """Naive UTC."""
    pinned_locale: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    """Editors' titles per served locale."""

    def pin_active(self, locale: str, now: datetime) -> bool:
        """Pinned on top of ``locale``'s feed at ``now`` (naive UTC)."""
        return (
            self.pinned
            and (self.pinned_until is None or self.pinned_until > now)
            and (self.pinned_locale is None or self.pinned_locale == locale)
        )


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


def plain_text(sanitized_html: str) -> str:
    """Text of already sanitized HTML (tags become spaces; entities are decoded)."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", sanitized_html))).strip()


def iso_utc(naive_utc: datetime) -> str:
    """``2026-11-25T09:30:00Z``: the text pydantic gives an aware UTC datetime."""
    return naive_utc.isoformat() + "Z"


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


@lru_cache(maxsize=1024)
def _titles_cached(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(value, dict):
        return ()
    return tuple((k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str) and v)


def _titles(raw: str | None) -> dict[str, str]:
    """The stored JSON object of editors' titles (``{}`` almost always: no parse then)."""
    if not raw or raw == "{}":
        return {}
    return dict(_titles_cached(raw))


def _live_member(never: frozenset[str]) -> sa.Exists:
    cond = [ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false()]
    # one plain bind per locale, not an expanding IN: ``CompiledStatement`` binds values as they are
    cond += [ITEM.c.locale != sa.bindparam(f"never_{i}", loc) for i, loc in enumerate(sorted(never))]
    return sa.exists().where(*cond)


# ---- the page statement ---------------------------------------------------------------------

MEMBER, RELATED_MEMBER, DISCLAIMER_ROW = 0, 1, 2

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "kind": sa.Integer(),
    "sid": sa.Integer(),
    "other": sa.Integer(),
    "score": sa.Float(),
    "first_published_at": sa.DateTime(),
    "pinned": sa.Boolean(),
    "pinned_until": sa.DateTime(),
    "pinned_locale": sa.String(),
    "titles": sa.Text(),
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
        pinned_until=page.c.pinned_until,
        pinned_locale=page.c.pinned_locale,
        titles=sa.cast(page.c.titles, sa.Text),
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


_STORY_COLUMNS = (
    STORY.c.id,
    STORY.c.first_published_at,
    STORY.c.pinned,
    STORY.c.pinned_until,
    STORY.c.pinned_locale,
    STORY.c.titles,
    STORY.c.canonical_item_id,
)


def _pin_active() -> sa.ColumnElement[bool]:
    """An editor's pin holds for this request's locale (``pin_locale``) at ``now``."""
    now = sa.bindparam("now", type_=UTCDateTime())
    return sa.and_(
        STORY.c.pinned == sa.true(),
        sa.or_(STORY.c.pinned_until.is_(None), STORY.c.pinned_until > now),
        sa.or_(
            STORY.c.pinned_locale.is_(None),
            STORY.c.pinned_locale == sa.bindparam("pin_locale", type_=sa.String()),
        ),
    )


@lru_cache(maxsize=256)
def feed_statement(
    keyset: bool, tickers: int, by_outlet: bool, never: frozenset[str], limit: int, pinned: bool = False
) -> sa.CompoundSelect[Any]:
    """The page statement of one request shape, built once: SQLAlchemy statement construction costs
    more CPU than the database spends running it. ``limit`` (stories to fetch) is rendered as a
    literal; bind ``now`` and ``pin_locale`` and, by shape, ``after_ts``/``after_id``, ``ticker_0``…
    (LIKE patterns) and ``outlet``. ``pinned``: the stories pinned on top of this locale's feed
    (they are left out of the ordinary pages, so a story is never listed twice)."""
    q = sa.select(*_STORY_COLUMNS).where(
        STORY.c.hidden == sa.false(), _live_member(never), _pin_active() if pinned else ~_pin_active()
    )
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


@dataclass(frozen=True)
class CompiledStatement:
    """A fixed statement compiled once for one dialect and run straight on the DBAPI cursor.

    SQLAlchemy's execute path (cache key, parameter and result processing, result metadata) costs
    more CPU than the driver's own work for a page; these statements never change, so that work is
    done once here, with SQLAlchemy's public compiler and type APIs. Driver errors are wrapped as
    SQLAlchemy's (``OperationalError`` → 503), and a dropped connection is invalidated.
    """

    sql: str
    positional: tuple[str, ...] | None
    """Parameter order for positional paramstyles (SQLite's ``?``); None for named ones."""
    defaults: Mapping[str, Any]
    binds: Mapping[str, Callable[[Any], Any]]
    results: tuple[tuple[int, Callable[[Any], Any]], ...]
    """Columns the driver does not return as the Python type (SQLite's datetimes and booleans)."""

    @classmethod
    def of(cls, statement: sa.Select[Any] | sa.CompoundSelect[Any], dialect: sa.Dialect) -> CompiledStatement:
        compiled = statement.compile(dialect=dialect)
        if compiled.has_out_parameters or "POSTCOMPILE" in compiled.string:
            raise ValueError("expanding or OUT parameters are not supported here")
        binds = {}
        defaults = {}
        for bind, name in compiled.bind_names.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds[name] = process
            if not bind.required:
                defaults[name] = bind.effective_value
        results = []
        for i, column in enumerate(statement.selected_columns):
            if isinstance(column.type, sa.DateTime | sa.Boolean):
                process = column.type.dialect_impl(dialect).result_processor(dialect, None)
                if process is not None:
                    results.append((i, process))
        positional = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        return cls(compiled.string, positional, defaults, binds, tuple(results))

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        values = {**self.defaults, **params}
        for name, process in self.binds.items():
            values[name] = process(values[name])
        args: Any = values if self.positional is None else [values[name] for name in self.positional]
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, args)
            rows: Sequence[Any] = cursor.fetchall()
        except dbapi.Error as exc:
            if conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor):
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(self.sql, args, exc, dbapi.Error) from exc
        finally:
            cursor.close()
        if self.results:
            converted = [list(row) for row in rows]
            for row in converted:
                for i, process in self.results:
                    row[i] = process(row[i])
            return converted
        return rows


@lru_cache(maxsize=256)
def compiled_for(
    statement: sa.Select[Any] | sa.CompoundSelect[Any], dialect: sa.Dialect
) -> CompiledStatement:
    return CompiledStatement.of(statement, dialect)


def read_page(conn: sa.Connection, statement: sa.CompoundSelect[Any], params: Mapping[str, Any]) -> PageRows:
    """Run a page statement and group its rows (one round trip)."""
    out = PageRows()
    stories: dict[int, StoryRow] = {}
    scored: dict[int, dict[int, float]] = defaultdict(dict)
    related: dict[int, dict[int, RelatedMember]] = defaultdict(dict)
    for (
        kind, sid, other, score, first_published_at, pinned, pinned_until, pinned_locale, titles,
        canonical_item_id, item_id, link, title,
        summary_html, published_at, image, locale, language, tickers, outlet_id, outlet_name, policy,
        version, text,
    ) in compiled_for(statement, conn.dialect).rows(conn, params):  # fmt: skip
        if kind == MEMBER:
            if sid not in stories:
                stories[sid] = StoryRow(
                    sid, first_published_at, bool(pinned), pinned_until, pinned_locale, _titles(titles)
                )
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
        for story_rows in (top, rows):
            if story_rows is None:
                continue
            for story in page if story_rows is rows else story_rows.stories:
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
                            _live_member(never),
                        )
                    )
                }
        changes = [
            {"id": sid, "change": "upsert" if sid in visible else "removed"}
            for sid, _ in sorted(latest.items(), key=lambda kv: kv[1])
        ]
        next_since = rows[-1][0] if rows else since
        return {"changes": changes, "next_since": self.signer.since_token(next_since), "has_more": has_more}

"""The SQL of a feed page, one story and delta sync, over the precomputed entries (``aggregator.entries``).

A page is one statement, one round trip: the page's entries (each with its story's
``updated_at``, which the re-exports send as the feed's ``updated``) — an index range scan on
``storyentry`` (locale, reach, published_at, story_id), newest first, ``limit + 1`` — stacked with
UNION ALL onto the newest version of every disclaimer (and, with ``outlet=``, a row saying whether
the outlet exists), told apart by ``kind``. A first page also stacks the entries an editor pinned
in the locale (an index range scan on ``storyentry`` (locale, pinned_until) past ``now``, under
the same filters): they top that page and are left out of every page's ordinary scan, so a story
is listed once. A filter walks its own index instead: per requested
ticker, ``storyticker`` (ticker, published_at, story_id) joined to the entry by primary key,
``limit + 1`` each, then merged; so a filter costs the same whether it matches many, few or no
stories. LIMIT is a literal (one statement per limit), so PostgreSQL keeps a generic plan.
Every page statement also returns when the next pin of its locale ends (``PIN_END_ROW``): a
cached page is right until then (``api.caching.PageCache``); ``page_changes_statement`` reads
the changes of entries a kept page is checked against (SQLite).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.entries import BY_ID_ONLY, IN_CHAIN
from aggregator.models import UTCDateTime

STORY = SQLModel.metadata.tables["story"]
ITEM = SQLModel.metadata.tables["item"]
SOURCE = SQLModel.metadata.tables["source"]
OUTLET = SQLModel.metadata.tables["outlet"]
DISCLAIMER = SQLModel.metadata.tables["disclaimer"]
FEEDCHANGE = SQLModel.metadata.tables["feedchange"]
ENTRY = SQLModel.metadata.tables["storyentry"]
TICKER = SQLModel.metadata.tables["storyticker"]
STORY_OUTLET = SQLModel.metadata.tables["storyoutlet"]
APPSTATE = SQLModel.metadata.tables["appstate"]
PAGECHANGE = SQLModel.metadata.tables["pagechange"]

ENTRY_ROW, DISCLAIMER_ROW, OUTLET_ROW, MEMBER_ROW, PINNED_ROW, PIN_END_ROW = 0, 1, 2, 3, 4, 5
MAX_PINNED = 50
"""At most this many pinned entries top a first page."""
PINNED_CANDIDATES = 1000
"""The pinned entries are found through (locale, pinned_until) unordered, at most this many, then
ordered: ordered in one step, SQLite walks (locale, reach, published_at) instead and reads every
entry of the locale (the statistics cannot tell it that almost no entry is pinned)."""

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "kind": sa.Integer(),
    "story_id": sa.Integer(),
    "published_at": sa.DateTime(),
    "policy": sa.String(),
    "body": sa.Text(),
    "locale": sa.String(),
    "version": sa.Integer(),
    "item_id": sa.Integer(),
    "link": sa.String(),
    "language": sa.String(),
    "outlet_id": sa.String(),
    "outlet_name": sa.String(),
    "canonical_item_id": sa.Integer(),
    "pinned_until": sa.DateTime(),
    "updated_at": sa.DateTime(),
}
"""The columns every part of a statement returns (NULL where a part has nothing), in order.
Datetimes are plain ``DateTime`` (naive UTC): ``api.dbapi`` converts SQLite's text."""


def _entry_part(kind: int, rows: sa.Subquery) -> sa.Select[Any]:
    """A page part of stored entries (the page itself, or its pinned stories) with their stories'
    ``updated_at``."""
    return _part(
        kind,
        rows,
        story_id=rows.c.story_id,
        published_at=rows.c.published_at,
        policy=rows.c.policy,
        body=rows.c.body,
        updated_at=_updated_at(rows.c.story_id),
    )


def _part(kind: int, source: Any, **given: Any) -> sa.Select[Any]:
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
    ).select_from(source)


def _disclaimers() -> sa.Select[Any]:
    newer = DISCLAIMER.alias("newer")
    return _part(
        DISCLAIMER_ROW,
        DISCLAIMER,
        policy=DISCLAIMER.c.policy,
        locale=DISCLAIMER.c.locale,
        version=DISCLAIMER.c.version,
        body=DISCLAIMER.c.text,
    ).where(
        ~sa.exists().where(
            newer.c.policy == DISCLAIMER.c.policy,
            newer.c.locale == DISCLAIMER.c.locale,
            newer.c.version > DISCLAIMER.c.version,
        )
    )


def _reach(entry: Any, untranslated: bool) -> sa.ColumnElement[bool]:
    """Literals, not binds: the planner sees the index prefix (locale, reach) of the default feed."""
    if untranslated:
        return entry.c.reach < sa.literal_column(str(BY_ID_ONLY), sa.Integer)
    return entry.c.reach == sa.literal_column(str(IN_CHAIN), sa.Integer)


def _keyset(published: Any, story_id: Any) -> sa.ColumnElement[bool]:
    after = sa.tuple_(
        sa.bindparam("after_ts", type_=UTCDateTime()), sa.bindparam("after_id", type_=sa.Integer())
    )
    return sa.tuple_(published, story_id) < after


def _now() -> Any:
    return sa.bindparam("now", type_=UTCDateTime())


def _unpinned(entry: Any) -> sa.ColumnElement[bool]:
    """Not pinned in this locale at ``now`` (a pinned entry is listed on top of the first page)."""
    return sa.or_(entry.c.pinned_until.is_(None), entry.c.pinned_until <= _now())


def _pinned(tickers: int, by_outlet: bool, untranslated: bool) -> sa.Select[Any]:
    """The locale's entries pinned at ``now`` that the page's filters let through."""
    entry = ENTRY.alias("pe")
    q = sa.select(entry).where(
        entry.c.locale == sa.bindparam("locale", type_=sa.String()),
        entry.c.pinned_until > _now(),
        _reach(entry, untranslated),
    )
    if tickers:
        ticker = TICKER.alias("pt")
        q = q.where(
            sa.exists().where(
                ticker.c.story_id == entry.c.story_id,
                ticker.c.ticker.in_([sa.bindparam(f"ticker_{i}", type_=sa.String()) for i in range(tickers)]),
            )
        )
    if by_outlet:
        outlet = STORY_OUTLET.alias("pto")
        q = q.where(
            sa.exists().where(
                outlet.c.story_id == entry.c.story_id,
                outlet.c.outlet_id == sa.bindparam("outlet", type_=sa.String()),
            )
        )
    found = q.limit(sa.literal_column(str(PINNED_CANDIDATES), sa.Integer)).subquery("pc")
    return _limited(sa.select(found), found.c.published_at, found.c.story_id, MAX_PINNED)


def _updated_at(story_id: Any) -> Any:
    """The story's ``updated_at`` by primary key, per page row (a join made SQLite copy the page's
    bodies into a temporary table first)."""
    story = STORY.alias("s")
    return sa.select(story.c.updated_at).where(story.c.id == story_id).scalar_subquery()


def _limited(q: sa.Select[Any], published: Any, story_id: Any, limit: int) -> sa.Select[Any]:
    return q.order_by(published.desc(), story_id.desc()).limit(sa.literal_column(str(int(limit)), sa.Integer))


@lru_cache(maxsize=512)
def feed_statement(
    keyset: bool, tickers: int, by_outlet: bool, untranslated: bool, limit: int
) -> sa.CompoundSelect[Any]:
    """The page statement of one request shape, built once (SQLAlchemy statement construction costs
    more CPU than the database spends running it). ``limit`` (entries to fetch) is rendered as a
    literal; bind ``locale``, ``now`` and, by shape, ``after_ts``/``after_id``, ``ticker_0``… and
    ``outlet``. A first page (no keyset) also returns the pinned entries (``PINNED_ROW``)."""
    locale = sa.bindparam("locale", type_=sa.String())
    entry = ENTRY.alias("e")
    cols = (entry.c.story_id, entry.c.published_at, entry.c.policy, entry.c.body)
    if tickers or by_outlet:
        # Each filter row walks its own (key, published_at, story_id) index; the entry is found by
        # primary key. The outlet filter, when tickers drive, is a primary-key probe.
        drivers: list[sa.Select[Any]] = []
        keys: list[tuple[Any, Any]] = (
            [(TICKER.alias(f"t{i}"), f"ticker_{i}") for i in range(tickers)]
            if tickers
            else [(STORY_OUTLET.alias("o"), "outlet")]
        )
        for driver, name in keys:
            key = driver.c.ticker if tickers else driver.c.outlet_id
            q = (
                sa.select(*cols)
                .select_from(
                    driver.join(
                        entry, sa.and_(entry.c.locale == locale, entry.c.story_id == driver.c.story_id)
                    )
                )
                .where(
                    key == sa.bindparam(name, type_=sa.String()),
                    _reach(entry, untranslated),
                    _unpinned(entry),
                )
            )
            if tickers and by_outlet:
                probe = STORY_OUTLET.alias("po")
                q = q.where(
                    sa.exists().where(
                        probe.c.story_id == driver.c.story_id,
                        probe.c.outlet_id == sa.bindparam("outlet", type_=sa.String()),
                    )
                )
            if keyset:
                q = q.where(_keyset(driver.c.published_at, driver.c.story_id))
            drivers.append(_limited(q, driver.c.published_at, driver.c.story_id, limit))
        merged = (
            drivers[0].subquery("page")
            if len(drivers) == 1
            else sa.union(*(d.subquery(f"d{i}").select() for i, d in enumerate(drivers))).subquery("page")
        )
        page = _limited(sa.select(merged), merged.c.published_at, merged.c.story_id, limit).subquery("pg")
    else:
        q = sa.select(*cols).where(entry.c.locale == locale, _reach(entry, untranslated), _unpinned(entry))
        if keyset:
            q = q.where(_keyset(entry.c.published_at, entry.c.story_id))
        page = _limited(q, entry.c.published_at, entry.c.story_id, limit).subquery("pg")
    parts: list[sa.Select[Any]] = [
        _entry_part(ENTRY_ROW, page),
        _disclaimers(),
    ]
    if not keyset:
        pinned = _pinned(tickers, by_outlet, untranslated).subquery("pinned")
        parts.append(_entry_part(PINNED_ROW, pinned))
    parts.append(_pin_end())
    if by_outlet:
        parts.append(
            _part(OUTLET_ROW, OUTLET, outlet_id=OUTLET.c.id).where(OUTLET.c.id == sa.bindparam("outlet"))
        )
    return sa.union_all(*parts)


def _pin_end() -> sa.Select[Any]:
    """When the locale's next pin ends (NULL: none pinned): until then no entry moves between the
    pinned top and the ordinary pages. One probe of (locale, pinned_until)."""
    entry = ENTRY.alias("pend")
    return _part(PIN_END_ROW, entry, pinned_until=sa.func.min(entry.c.pinned_until)).where(
        entry.c.locale == sa.bindparam("locale", type_=sa.String()), entry.c.pinned_until > _now()
    )


@lru_cache(maxsize=1)
def page_changes_statement() -> sa.Select[Any]:
    """What a kept page is checked against on SQLite: the changes of entries after ``since``, in
    commit order (``aggregator.entries.touch_pages``); (seq, locale, lo, hi), times naive UTC. A
    primary-key range scan, empty when nothing changed."""
    return (
        sa.select(
            PAGECHANGE.c.seq,
            PAGECHANGE.c.locale,
            sa.type_coerce(PAGECHANGE.c.lo, sa.DateTime()),
            sa.type_coerce(PAGECHANGE.c.hi, sa.DateTime()),
        )
        .where(PAGECHANGE.c.seq > sa.bindparam("since", type_=sa.Integer()))
        .order_by(PAGECHANGE.c.seq)
    )


@lru_cache(maxsize=1)
def disclaimer_statement() -> sa.Select[Any]:
    """The newest version of every disclaimer (``DISCLAIMER_ROW`` rows, as a page has them)."""
    return _disclaimers()


@lru_cache(maxsize=1)
def story_statement() -> sa.CompoundSelect[Any]:
    """One story's entry in one locale (with its pin's end), its live members and the disclaimers;
    bind ``story_id`` and ``locale``. No entry row: the story is missing, hidden or has no live member."""
    story_id = sa.bindparam("story_id", type_=sa.Integer())
    entry = _part(
        ENTRY_ROW,
        ENTRY,
        story_id=ENTRY.c.story_id,
        policy=ENTRY.c.policy,
        body=ENTRY.c.body,
        pinned_until=ENTRY.c.pinned_until,
    ).where(ENTRY.c.story_id == story_id, ENTRY.c.locale == sa.bindparam("locale", type_=sa.String()))
    members = _part(
        MEMBER_ROW,
        ITEM.join(STORY, STORY.c.id == ITEM.c.story_id)
        .join(SOURCE, SOURCE.c.id == ITEM.c.source_id)
        .join(OUTLET, OUTLET.c.id == SOURCE.c.outlet_id),
        story_id=ITEM.c.story_id,
        published_at=ITEM.c.published_at,
        body=ITEM.c.title,
        locale=ITEM.c.locale,
        item_id=ITEM.c.id,
        link=ITEM.c.link,
        language=ITEM.c.language,
        outlet_id=SOURCE.c.outlet_id,
        outlet_name=OUTLET.c.name,
        canonical_item_id=STORY.c.canonical_item_id,
    ).where(ITEM.c.story_id == story_id, ITEM.c.tombstone == sa.false())
    return sa.union_all(entry, members, _disclaimers())

"""The SQL of a Google Reader stream over the precomputed feed entries (``aggregator.entries``).

A key's reading list is its locale's default feed: the ``storyentry`` rows of that locale with a
version in its chain (``reach`` IN_CHAIN), each story once, newest published first — the rows
``/v1/feed`` pages through, on the same index. A feed (``feed/<n>``) is the entries whose *served*
member is from that outlet (``storyentry.outlet_id``), so a story sits in exactly one feed and its
``origin`` is that feed; a label is a ticker (``storyticker``); ``starred``/``read`` are the key's
flags (``greaderstate``). ``ot``/``nt`` filter on when babelwire stored the story
(``story.stored_at``), not on its publication, so items read elsewhere are never hidden from a sync.

Continuation is a keyset (published µs and story id of the last item), sent as a string and left
out on the last page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from aggregator.entries import IN_CHAIN, as_utc
from aggregator.models import UTCDateTime
from aggregator.readstate import STATE
from api.dbapi import compiled_for
from api.feed_statements import ENTRY, OUTLET, STORY, TICKER
from api.greader.ids import Stream

MAX_N = 10_000
"""Most refs (``n``) one page gives (Read You asks for 10,000)."""
PAGE_SIZES = (20, 50, 100, 250, 500, 1_000, 2_500, 5_000, MAX_N)
"""A page statement fetches one of these (plus one) rows, the page keeps ``n``: few statements."""
MAX_CONTENTS = 1_000
"""Most items one ``stream/items/contents`` call returns (NetNewsWire asks 150 at a time)."""
_CONTINUATION = re.compile(r"(-?[0-9]{1,19})_([0-9]{1,19})")


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last item's publication (µs since the epoch) and story id."""

    published_us: int
    story_id: int

    def token(self) -> str:
        return f"{self.published_us}_{self.story_id}"


def parse_continuation(value: str | None) -> Position | bool | None:
    """A position; None for no continuation (absent, empty, ``null``); False when malformed."""
    text = (value or "").strip()
    if text in ("", "null", "undefined"):
        return None
    found = _CONTINUATION.fullmatch(text)
    if found is None:
        return False
    return Position(int(found.group(1)), int(found.group(2)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    return (as_utc(moment) - _EPOCH) // _MICRO


def from_micros(value: int) -> datetime:
    return _EPOCH + value * _MICRO


@dataclass(frozen=True)
class StreamQuery:
    """A validated stream request."""

    stream: Stream
    n: int = 20
    after: Position | None = None
    oldest_first: bool = False
    exclude: frozenset[str] = frozenset()
    """States (read, starred) whose items are left out (``xt``)."""
    include: frozenset[str] = frozenset()
    """States (read, starred) the items must have (``it``)."""
    newer_than: datetime | None = None
    """``ot``: stored at or after."""
    older_than: datetime | None = None
    """``nt``: stored before."""


def _stored(story: Any) -> Any:
    return sa.func.coalesce(story.c.stored_at, story.c.first_published_at, type_=UTCDateTime())


def _flag(state: Any, name: str) -> Any:
    return state.c.read if name == "read" else state.c.starred


def _bind(name: str, type_: Any = None) -> Any:
    return sa.bindparam(name, type_=type_ if type_ is not None else sa.String())


def members(kind: str) -> tuple[Any, list[sa.ColumnElement[bool]], Any, Any]:
    """(FROM clause, conditions, published column, story id column) of the entries in a stream of
    ``kind``; bind ``locale``, ``key_id`` and, by kind, ``ticker`` or ``outlet`` (a feed's outlet,
    "" for no such feed)."""
    entry = ENTRY.alias("e")
    locale = _bind("locale")
    where: list[sa.ColumnElement[bool]] = [
        entry.c.locale == locale,
        entry.c.reach == sa.literal_column(str(IN_CHAIN), sa.Integer),
    ]
    published, story_id = entry.c.published_at, entry.c.story_id
    source: Any = entry
    if kind == "label":
        ticker = TICKER.alias("t")
        source = ticker.join(entry, sa.and_(entry.c.locale == locale, entry.c.story_id == ticker.c.story_id))
        where.append(ticker.c.ticker == _bind("ticker"))
        published, story_id = ticker.c.published_at, ticker.c.story_id
    elif kind in ("read", "starred"):
        state = STATE.alias("s")
        source = state.join(entry, sa.and_(entry.c.locale == locale, entry.c.story_id == state.c.story_id))
        where += [state.c.key_id == _bind("key_id", sa.Integer()), _flag(state, kind) == sa.true()]
    elif kind == "feed":
        where.append(entry.c.outlet_id == _bind("outlet"))
    elif kind == "empty":
        where.append(sa.false())
    return source, where, published, story_id


def stream_params(query: StreamQuery, key_id: int, locale: str, outlet: str | None) -> dict[str, Any]:
    """The values :func:`page_statement` binds for ``query``."""
    params: dict[str, Any] = {"locale": locale, "key_id": key_id, "outlet": outlet or ""}
    if query.stream.kind == "label":
        params["ticker"] = str(query.stream.value)
    if query.newer_than is not None:
        params["ot"] = query.newer_than
    if query.older_than is not None:
        params["nt"] = query.older_than
    if query.after is not None:
        params["after_ts"] = from_micros(query.after.published_us)
        params["after_id"] = query.after.story_id
    return params


def page_shape(query: StreamQuery) -> tuple[Any, ...]:
    return (
        query.stream.kind,
        query.exclude,
        query.include,
        query.newer_than is not None,
        query.older_than is not None,
        query.after is not None,
        query.oldest_first,
        next(size for size in PAGE_SIZES if size >= query.n),
    )


@lru_cache(maxsize=256)
def page_statement(
    kind: str,
    exclude: frozenset[str],
    include: frozenset[str],
    newer: bool,
    older: bool,
    after: bool,
    oldest_first: bool,
    n: int,
) -> sa.Select[Any]:
    """Story id and publication (raw: SQLite's text, PostgreSQL's datetime) of one page, ``n + 1``
    rows to tell whether more follow; built once per request shape (``page_shape``)."""
    source, where, published, story_id = members(kind)
    key_id = _bind("key_id", sa.Integer())
    for name in ("read", "starred"):
        flagged = STATE.alias(f"x_{name}")
        exists = sa.exists().where(
            flagged.c.key_id == key_id, flagged.c.story_id == story_id, _flag(flagged, name) == sa.true()
        )
        if name in exclude:
            where.append(sa.false() if kind == name else ~exists)
        if name in include and kind != name:
            where.append(exists)
    if newer or older:
        story = STORY.alias("st")
        source = source.join(story, story.c.id == story_id)
        if newer:
            where.append(_stored(story) >= _bind("ot", UTCDateTime()))
        if older:
            where.append(_stored(story) < _bind("nt", UTCDateTime()))
    if after:
        position = sa.tuple_(_bind("after_ts", UTCDateTime()), _bind("after_id", sa.Integer()))
        key = sa.tuple_(published, story_id)
        where.append(key > position if oldest_first else key < position)
    order = (published.asc(), story_id.asc()) if oldest_first else (published.desc(), story_id.desc())
    return (
        sa.select(story_id.label("story_id"), sa.type_coerce(published, sa.String()).label("published_at"))
        .select_from(source)
        .where(*where)
        .order_by(*order)
        .limit(sa.literal_column(str(int(n) + 1), sa.Integer))
    )


def moment(value: Any) -> datetime:
    """A stored naive-UTC time as the driver gives it (SQLite: text) → aware UTC."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def marked_select(kind: str, before: bool) -> sa.Select[Any]:
    """The story ids ``mark-all-as-read`` marks in a stream of ``kind`` (binds as
    :func:`page_statement`), with ``before``: only those stored at or before ``ts``."""
    source, where, _, story_id = members(kind)
    if before:
        story = STORY.alias("st")
        source = source.join(story, story.c.id == story_id)
        where.append(_stored(story) <= _bind("ts", UTCDateTime()))
    return sa.select(story_id).select_from(source).where(*where)


@dataclass(frozen=True)
class Row:
    """One item as stored: what its rendering is checked against (the entry's stamp, the served
    outlet's policy and feed, the store time) and the key's flags on it; the entry body (without
    its closing brace and disclaimer) only once it is read to render (:func:`read_bodies`)."""

    story_id: int
    stamp: int
    policy: str
    outlet_id: str | None
    stored: Any
    """When the story was stored, as the driver gives it (SQLite: text): parsed only to render."""
    read: bool
    starred: bool
    body: str = ""
    reach: int = IN_CHAIN
    listed_at: Any = None
    """The entry's ``published_at`` as the driver gives it: where a change of it is told (with the
    feed key of its locale and ``reach``)."""

    @property
    def stored_at(self) -> datetime:
        return moment(self.stored)


CONTENTS_SIZES = (1, 10, 50, 150, 300, MAX_CONTENTS)
"""``IN`` lists have one of these lengths (padded with 0, no story's id): a few fixed statements."""


def _in_ids(column: Any, size: int) -> Any:
    return column.in_([_bind(f"id_{i}", sa.Integer()) for i in range(size)])


@lru_cache(maxsize=16)
def contents_statement(size: int) -> sa.Select[Any]:
    """The entries' stamps, policies and served outlets (no bodies) of up to ``size`` stories in one
    locale with a key's flags: the entries index-only on ``ix_storyentry_stamp`` (named to SQLite,
    whose planner otherwise reads each row), the flags by ``greaderstate``'s key; bind ``locale``,
    ``key_id`` and ``id_0``… ``id_<size-1>``."""
    entry, state = ENTRY.alias("e"), STATE.alias("s")
    key_id = _bind("key_id", sa.Integer())
    return (
        sa.select(
            entry.c.story_id,
            entry.c.stamp,
            entry.c.policy,
            entry.c.outlet_id,
            # integers: no result conversion per row (SQLite gives booleans as 0/1)
            sa.type_coerce(sa.func.coalesce(state.c.read, sa.false()), sa.Integer()),
            sa.type_coerce(sa.func.coalesce(state.c.starred, sa.false()), sa.Integer()),
        )
        .select_from(
            entry.outerjoin(state, sa.and_(state.c.key_id == key_id, state.c.story_id == entry.c.story_id))
        )
        .where(entry.c.locale == _bind("locale"), _in_ids(entry.c.story_id, size))
        .with_hint(entry, "INDEXED BY ix_storyentry_stamp", "sqlite")
    )


@lru_cache(maxsize=16)
def bodies_statement(size: int) -> sa.Select[Any]:
    """The bodies of up to ``size`` entries of one locale, each with its stamp, policy, served
    outlet, the story's store time, reach and publication as of the same read; binds as :func:`contents_statement`
    (but ``key_id``)."""
    entry, story = ENTRY.alias("e"), STORY.alias("st")
    return (
        sa.select(
            entry.c.story_id,
            entry.c.stamp,
            entry.c.body,
            entry.c.policy,
            entry.c.outlet_id,
            sa.type_coerce(_stored(story), sa.String()),
            entry.c.reach,
            sa.type_coerce(entry.c.published_at, sa.String()),
        )
        .select_from(entry.join(story, story.c.id == entry.c.story_id))
        .where(entry.c.locale == _bind("locale"), _in_ids(entry.c.story_id, size))
    )


def _chunks(story_ids: Sequence[int]) -> Any:
    """(statement size, binds of the ids) per at most ``MAX_CONTENTS`` ids."""
    for i in range(0, len(story_ids), MAX_CONTENTS):
        chunk = list(story_ids[i : i + MAX_CONTENTS])
        size = next(s for s in CONTENTS_SIZES if s >= len(chunk))
        yield size, {f"id_{j}": chunk[j] if j < len(chunk) else 0 for j in range(size)}


def read_rows(
    conn: sa.Connection, key_id: int, locale: str, story_ids: Sequence[int]
) -> dict[int, tuple[int, int, str, str | None, Any, Any]]:
    """(story id, stamp, policy, served outlet, read, starred) by story, of the stories among
    ``story_ids`` with an entry in ``locale``: plain tuples (150 a request)."""
    out: dict[int, Any] = {}
    for size, ids in _chunks(story_ids):
        params = {"locale": locale, "key_id": key_id, **ids}
        for row in compiled_for(contents_statement(size), conn.dialect).rows(conn, params):
            out[row[0]] = row
    return out


def read_bodies(
    conn: sa.Connection, key_id: int, locale: str, flags: Mapping[int, tuple[Any, Any]]
) -> dict[int, Row]:
    """The entries of the stories in ``flags`` (story → the key's read and starred flags) as rows
    with their bodies, stamps, policies, outlets and store times as of this read (one gone since
    is left out)."""
    out: dict[int, Row] = {}
    for size, ids in _chunks(list(flags)):
        for sid, stamp, body, policy, outlet_id, stored, reach, listed_at in compiled_for(
            bodies_statement(size), conn.dialect
        ).rows(conn, {"locale": locale, **ids}):
            read, starred = flags[sid]
            out[sid] = Row(sid, int(stamp), policy, outlet_id, stored, bool(read), bool(starred), body,
                           int(reach), listed_at)  # fmt: skip
    return out


@dataclass(frozen=True)
class Outlet:
    """An outlet as a subscription."""

    id: str
    number: int
    name: str
    homepage: str | None


def outlets(conn: sa.Connection, numbers: Mapping[str, int]) -> list[Outlet]:
    return [
        Outlet(oid, numbers[oid], name or oid, homepage)
        for oid, name, homepage in conn.execute(
            sa.select(OUTLET.c.id, OUTLET.c.name, OUTLET.c.homepage).order_by(OUTLET.c.name, OUTLET.c.id)
        )
        if oid in numbers
    ]


FEED_COUNT, LABEL_COUNT = 0, 1
"""``unread_statement``'s kinds: a row per served outlet (feed) and per ticker (label)."""


@lru_cache(maxsize=1)
def unread_statement() -> sa.CompoundSelect[Any] | sa.Select[Any]:
    """Unread stories per served outlet and per ticker of a key's reading list, one grouped
    statement: (kind, outlet or ticker, unread, newest publication in that stream). Unread is the
    stream's size (index-only on ``ix_storyentry_outlet`` for feeds; ``ix_storyentry_page`` →
    ``storyticker``'s key for labels) less the key's read flags in it (its ``greaderstate`` rows),
    so the cost grows with what the key has read, never with a lookup per story. Binds ``locale``
    and ``key_id``."""
    locale, key_id = _bind("locale"), _bind("key_id", sa.Integer())
    in_chain = sa.literal_column(str(IN_CHAIN), sa.Integer)
    parts = []
    for read in (False, True):
        entry, ticker, state = ENTRY.alias(), TICKER.alias(), STATE.alias()
        on_entry = sa.and_(entry.c.locale == locale, entry.c.reach == in_chain)
        sign = -1 if read else 1
        newest: Any = sa.null() if read else sa.func.max(entry.c.published_at)
        feeds: Any = sa.select(
            sa.literal_column(str(FEED_COUNT), sa.Integer).label("kind"),
            entry.c.outlet_id.label("name"),
            (sa.func.count() * sa.literal_column(str(sign), sa.Integer)).label("n"),
            sa.type_coerce(newest, sa.String()).label("newest"),
        )
        labels = sa.select(
            sa.literal_column(str(LABEL_COUNT), sa.Integer),
            ticker.c.ticker,
            sa.func.count() * sa.literal_column(str(sign), sa.Integer),
            sa.type_coerce(newest, sa.String()),
        )
        if read:
            marked = sa.and_(state.c.key_id == key_id, state.c.read == sa.true())
            feeds = feeds.select_from(
                state.join(entry, sa.and_(on_entry, entry.c.story_id == state.c.story_id))
            )
            labels = labels.select_from(
                state.join(entry, sa.and_(on_entry, entry.c.story_id == state.c.story_id)).join(
                    ticker, ticker.c.story_id == state.c.story_id
                )
            )
            feeds, labels = feeds.where(marked), labels.where(marked)
        else:
            # Per outlet, two seeks on ix_storyentry_outlet (locale, outlet, reach): the count reads
            # only that feed's entries, the newest one index entry; then the entries with no outlet.
            def of_outlet(column: Any) -> Any:
                inner = ENTRY.alias()
                return (
                    sa.select(column(inner))
                    .where(
                        inner.c.locale == locale, inner.c.outlet_id == OUTLET.c.id, inner.c.reach == in_chain
                    )
                    .scalar_subquery()
                )

            parts.append(
                sa.select(
                    sa.literal_column(str(FEED_COUNT), sa.Integer).label("kind"),
                    OUTLET.c.id.label("name"),
                    of_outlet(lambda e: sa.func.count()).label("n"),
                    sa.type_coerce(of_outlet(lambda e: sa.func.max(e.c.published_at)), sa.String()).label(
                        "newest"
                    ),
                )
            )
            feeds = feeds.where(on_entry, entry.c.outlet_id.is_(None))
            # ``+ 0``: the entries (index-only on ix_storyentry_page) drive, each probing the
            # ticker's key; SQLite would otherwise scan every ticker and read each entry's row.
            labels = labels.select_from(
                entry.join(ticker, ticker.c.story_id == entry.c.story_id + sa.literal_column("0", sa.Integer))
            ).where(on_entry)
        parts += [feeds.group_by(entry.c.outlet_id), labels.group_by(ticker.c.ticker)]
    every = sa.union_all(*parts).subquery("counts")
    return (
        sa.select(every.c.kind, every.c.name, sa.func.sum(every.c.n), sa.func.max(every.c.newest))
        .group_by(every.c.kind, every.c.name)
        .order_by(every.c.kind, every.c.name)
    )


def unread_counts(
    conn: sa.Connection, key_id: int, locale: str
) -> list[tuple[int, str | None, int, datetime]]:
    """(kind, served outlet or ticker, unread stories, newest publication) of the key's reading
    list, per feed and per label (``unread_statement``)."""
    rows = compiled_for(unread_statement(), conn.dialect).rows(conn, {"locale": locale, "key_id": key_id})
    return [
        (int(kind), name, int(count or 0), moment(newest)) for kind, name, count, newest in rows if newest
    ]


@lru_cache(maxsize=1)
def flags_statement() -> sa.Select[Any]:
    """(story id, read, starred) of every story a key has flagged (a range of ``greaderstate``'s
    key); bind ``key_id``."""
    read = sa.type_coerce(STATE.c.read, sa.Integer())
    starred = sa.type_coerce(STATE.c.starred, sa.Integer())
    return sa.select(STATE.c.story_id, read, starred).where(
        STATE.c.key_id == _bind("key_id", sa.Integer()), sa.or_(STATE.c.read, STATE.c.starred)
    )


def key_flags(conn: sa.Connection, key_id: int) -> dict[int, tuple[bool, bool]]:
    """story → (read, starred) of the stories ``key_id`` has read or starred."""
    rows = compiled_for(flags_statement(), conn.dialect).rows(conn, {"key_id": key_id})
    return {sid: (bool(read), bool(starred)) for sid, read, starred in rows}


def tickers(conn: sa.Connection) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(TICKER.c.ticker).distinct().order_by(TICKER.c.ticker))]


def feed_outlet(numbers: Mapping[str, int], number: int) -> str | None:
    return next((oid for oid, n in numbers.items() if n == number), None)

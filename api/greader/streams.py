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
from typing import Any

import sqlalchemy as sa

from aggregator.entries import IN_CHAIN, as_utc
from aggregator.models import UTCDateTime
from aggregator.readstate import STATE
from api.feed_statements import ENTRY, OUTLET, STORY, TICKER
from api.greader.ids import Stream

MAX_N = 10_000
"""Most refs (``n``) one page gives (Read You asks for 10,000)."""
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


def members(
    stream: Stream, key_id: int, locale: str, outlet: str | None
) -> tuple[Any, list[sa.ColumnElement[bool]], Any, Any]:
    """(FROM clause, conditions, published column, story id column) of the entries in ``stream``;
    ``outlet`` is the outlet of a feed stream (None: no such feed, nothing in it)."""
    entry = ENTRY.alias("e")
    where: list[sa.ColumnElement[bool]] = [
        entry.c.locale == sa.literal(locale, sa.String()),
        entry.c.reach == sa.literal_column(str(IN_CHAIN), sa.Integer),
    ]
    published, story_id = entry.c.published_at, entry.c.story_id
    source: Any = entry
    if stream.kind == "label":
        ticker = TICKER.alias("t")
        source = ticker.join(entry, sa.and_(entry.c.locale == locale, entry.c.story_id == ticker.c.story_id))
        where.append(ticker.c.ticker == str(stream.value))
        published, story_id = ticker.c.published_at, ticker.c.story_id
    elif stream.kind in ("read", "starred"):
        state = STATE.alias("s")
        source = state.join(entry, sa.and_(entry.c.locale == locale, entry.c.story_id == state.c.story_id))
        where += [state.c.key_id == key_id, _flag(state, stream.kind) == sa.true()]
    elif stream.kind == "feed":
        where.append(entry.c.outlet_id == outlet if outlet is not None else sa.false())
    elif stream.kind == "empty":
        where.append(sa.false())
    return source, where, published, story_id


def stream_select(query: StreamQuery, key_id: int, locale: str, outlet: str | None) -> sa.Select[Any]:
    """Story id and publication of one page (``n + 1`` rows, to tell whether more follow)."""
    source, where, published, story_id = members(query.stream, key_id, locale, outlet)
    for name in ("read", "starred"):
        flagged = STATE.alias(f"x_{name}")
        exists = sa.exists().where(
            flagged.c.key_id == key_id, flagged.c.story_id == story_id, _flag(flagged, name) == sa.true()
        )
        if name in query.exclude and query.stream.kind != name:
            where.append(~exists)
        if name in query.include and query.stream.kind != name:
            where.append(exists)
    if query.newer_than is not None or query.older_than is not None:
        story = STORY.alias("st")
        source = source.join(story, story.c.id == story_id)
        if query.newer_than is not None:
            where.append(_stored(story) >= query.newer_than)
        if query.older_than is not None:
            where.append(_stored(story) < query.older_than)
    if query.after is not None:
        after = sa.tuple_(
            sa.literal(from_micros(query.after.published_us), UTCDateTime()),
            sa.literal(query.after.story_id, sa.Integer()),
        )
        key = sa.tuple_(published, story_id)
        where.append(key > after if query.oldest_first else key < after)
    order = (published.asc(), story_id.asc()) if query.oldest_first else (published.desc(), story_id.desc())
    return (
        sa.select(story_id.label("story_id"), published.label("published_at"))
        .select_from(source)
        .where(*where)
        .order_by(*order)
        .limit(query.n + 1)
    )


def marked_select(
    stream: Stream, key_id: int, locale: str, outlet: str | None, before: datetime | None
) -> sa.Select[Any]:
    """The story ids ``mark-all-as-read`` marks: the stream's, stored at or before ``before``."""
    source, where, _, story_id = members(stream, key_id, locale, outlet)
    if before is not None:
        story = STORY.alias("st")
        source = source.join(story, story.c.id == story_id)
        where.append(_stored(story) <= before)
    return sa.select(story_id).select_from(source).where(*where)


@dataclass(frozen=True)
class Row:
    """One item as stored: the entry body (without its closing brace and disclaimer) and the key's
    flags on it."""

    story_id: int
    body: str
    policy: str
    outlet_id: str | None
    stored_at: datetime
    read: bool
    starred: bool


def contents_select(key_id: int, locale: str, story_ids: Sequence[int]) -> sa.Select[Any]:
    entry, story, state = ENTRY.alias("e"), STORY.alias("st"), STATE.alias("s")
    return (
        sa.select(
            entry.c.story_id,
            entry.c.body,
            entry.c.policy,
            entry.c.outlet_id,
            _stored(story),
            sa.func.coalesce(state.c.read, sa.false()),
            sa.func.coalesce(state.c.starred, sa.false()),
        )
        .select_from(
            entry.join(story, story.c.id == entry.c.story_id).outerjoin(
                state, sa.and_(state.c.key_id == key_id, state.c.story_id == entry.c.story_id)
            )
        )
        .where(entry.c.locale == locale, entry.c.story_id.in_(list(story_ids)))
    )


def read_rows(conn: sa.Connection, key_id: int, locale: str, story_ids: Sequence[int]) -> dict[int, Row]:
    out: dict[int, Row] = {}
    for sid, body, policy, outlet_id, stored, read, starred in conn.execute(
        contents_select(key_id, locale, story_ids)
    ):
        out[sid] = Row(sid, body, policy, outlet_id, as_utc(stored), bool(read), bool(starred))
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


def unread_counts(conn: sa.Connection, key_id: int, locale: str) -> list[tuple[str | None, int, datetime]]:
    """(served outlet, unread stories, newest publication) of the key's reading list."""
    entry, state = ENTRY.alias("e"), STATE.alias("s")
    read = sa.exists().where(
        state.c.key_id == key_id, state.c.story_id == entry.c.story_id, state.c.read == sa.true()
    )
    return [
        (outlet_id, int(count), as_utc(newest))
        for outlet_id, count, newest in conn.execute(
            sa.select(entry.c.outlet_id, sa.func.count(), sa.func.max(entry.c.published_at))
            .where(
                entry.c.locale == locale,
                entry.c.reach == sa.literal_column(str(IN_CHAIN), sa.Integer),
                ~read,
            )
            .group_by(entry.c.outlet_id)
        )
    ]


def tickers(conn: sa.Connection) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(TICKER.c.ticker).distinct().order_by(TICKER.c.ticker))]


def feed_outlet(numbers: Mapping[str, int], number: int) -> str | None:
    return next((oid for oid, n in numbers.items() if n == number), None)

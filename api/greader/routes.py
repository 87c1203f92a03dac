"""The HTTP surface of the Google Reader API, mounted at ``/greader`` by ``install_greader``.

Parameters are read by hand from the query string and the form body together (clients put ``i``,
``T``, ``s`` in either), repeated names kept; ``output`` is ignored (always JSON, as newsboat ≥2.24
and FeedMe omit it). Writes answer exactly ``OK``. Unknown paths are 404 (never a silent ``[]``),
``subscription/edit`` and ``quickadd`` 501 (the editorial side manages sources). Duplicate slashes
in a ``/greader`` path are collapsed first: newsboat concatenates its configured URL and paths.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import unquote_plus

import pydantic_core
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.entries import BY_ID_ONLY, UNTRANSLATED_KEY, feed_key
from aggregator.readstate import feed_numbers, mark_read_from, set_flags, state_key
from aggregator.settings import Settings
from api.caching import PageCache, Rendered, Span, cached_response, span
from api.dbapi import compiled_for
from api.errors import Problem, error_response
from api.export.texts import TITLE
from api.feed import FeedReader
from api.greader import render
from api.greader.auth import KEYS_SPAN, LoginLimiter, Reader, Tokens
from api.greader.ids import LABEL_PREFIX, READING_LIST, Stream, parse_item_id, parse_stream
from api.greader.streams import (
    LABEL_COUNT,
    MAX_CONTENTS,
    MAX_N,
    Outlet,
    Position,
    Row,
    StreamQuery,
    feed_outlet,
    key_flags,
    marked_select,
    micros,
    moment,
    outlets,
    page_shape,
    page_statement,
    parse_continuation,
    read_bodies,
    read_rows,
    stream_params,
    tickers,
    unread_counts,
)

log = logging.getLogger("babelwire.greader")
T = TypeVar("T")
PREFIX = "/greader"
API = PREFIX + "/reader/api/0"
MAX_BODY = 2_000_000
OUTLETS_TTL_S = 5.0
RENDERED_ITEMS = 50_000
"""Items kept rendered per process (about 2 KB each), oldest dropped first."""
KEPT_ANSWERS = 4096
"""``stream/items/ids`` and ``unread-count`` answers kept per process (least recently used dropped)."""
KEPT_CONTENTS = 256
"""Whole ``stream/items/contents`` answers kept per process (about 200 KB each with their gzip for
150 items: 50 MB at most)."""
KEPT_STATES = 4096
"""Keys' epochs and flags kept per process (least recently used dropped)."""
KEPT_ALIASES = 1024
"""Raw requests (their form as a digest) remembered with the answer's key (:meth:`GreaderService.alias`)."""
KEPT_CONTENTS_S = 60.0
"""A kept ``stream/items/contents`` answer is answered at most this long (its ``updated`` ages)."""
BAD_TOKEN = {"Google-Bad-Token": "true", "X-Reader-Google-Bad-Token": "true", "Cache-Control": "no-store"}
PRIVATE = "private, no-cache"
_SLASHES = re.compile(r"/{2,}")
_SLASHES_RAW = re.compile(rb"/{2,}")


class CollapseSlashes:
    """``/greader//accounts/ClientLogin`` (newsboat with a trailing slash in its URL) routes like
    ``/greader/accounts/ClientLogin``; other paths are left alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            path = _SLASHES.sub("/", scope["path"])
            if path.startswith(PREFIX + "/") or path == PREFIX:
                raw = scope.get("raw_path")
                scope = dict(scope, path=path, raw_path=_SLASHES_RAW.sub(b"/", raw) if raw else raw)
        await self.app(scope, receive, send)


class GreaderFront:
    """Answers the sync's hottest paths (``stream/items/ids``, ``stream/items/contents``,
    ``unread-count``) ahead of FastAPI's routing: their endpoint is called as the route would call
    it (the same parameters, authentication and errors; ``scope["route"]`` set for the metrics),
    without the router's matching and request machinery, which cost more than a kept answer."""

    def __init__(
        self, app: ASGIApp, routes: dict[str, tuple[Callable[[Request], Awaitable[Response]], APIRoute]]
    ) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hot = self.routes.get(get_route_path(scope))
            if hot is not None and scope["method"] in (hot[1].methods or ()):
                endpoint, scope["route"] = hot
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Params:
    """The request's query and form parameters, repeated names kept, in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.pairs if k == name), None)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]


def form_pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``, unquoting only the pairs that need it (a
    150-id ``items/contents`` form is mostly plain)."""
    out = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        out.append((name, value))
    return out


async def read_params(request: Request) -> Params | Problem:
    pairs = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await request.body()
        if len(body) > MAX_BODY:
            return Problem(413, "payload_too_large", f"form body over {MAX_BODY} bytes")
        if body and "multipart/" not in request.headers.get("content-type", ""):
            pairs += form_pairs(body.decode("utf-8", "replace"))
    return Params(pairs)


def unauthorized() -> Response:
    return PlainTextResponse("Unauthorized", status_code=401, headers=BAD_TOKEN)


def text(body: str, status: int = 200) -> Response:
    return Response(body.encode(), status_code=status, media_type="text/plain; charset=utf-8",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _int(value: str | None, name: str, low: int, high: int, default: int) -> int | Problem:
    if value is None or value.strip() == "":
        return default
    text_value = value.strip()
    if not re.fullmatch(r"-?[0-9]{1,20}", text_value):
        return Problem(400, "invalid_parameter", f"{name} must be an integer, got {value[:20]!r}")
    return min(max(int(text_value), low), high)


def _time(value: str | None, name: str) -> datetime | Problem | None:
    """Unix seconds (16 digits or more: microseconds, as some clients send ``ts``)."""
    if value is None or value.strip() == "":
        return None
    raw = value.strip()
    if not re.fullmatch(r"[0-9]{1,20}", raw):
        return Problem(400, "invalid_parameter", f"{name} must be a unix time, got {value[:20]!r}")
    number = int(raw)
    seconds = number / 1_000_000 if len(raw) >= 16 else float(number)
    try:
        return datetime.fromtimestamp(min(seconds, 253402300799.0), UTC)
    except (OverflowError, OSError, ValueError):
        return Problem(400, "invalid_parameter", f"{name} is out of range")


def _states(values: list[str]) -> frozenset[str]:
    out = set()
    for value in values:
        stream = parse_stream(value)
        if stream is not None and stream.kind in ("read", "starred"):
            out.add(stream.kind)
    return frozenset(out)


def stream_query(params: Params, stream_text: str | None, default_n: int) -> StreamQuery | Problem:
    stream = parse_stream(stream_text)
    if stream is None:
        return Problem(400, "invalid_stream", f"unknown stream {stream_text[:80] if stream_text else ''!r}")
    n = _int(params.get("n"), "n", 1, MAX_N, default_n)
    if isinstance(n, Problem):
        return n
    after = parse_continuation(params.get("c"))
    if after is False:
        return Problem(400, "invalid_continuation", "c is not a continuation this server gave")
    newer = _time(params.get("ot"), "ot")
    older = _time(params.get("nt"), "nt")
    for bad in (newer, older):
        if isinstance(bad, Problem):
            return bad
    assert not isinstance(newer, Problem) and not isinstance(older, Problem)
    return StreamQuery(
        stream=stream,
        n=n,
        after=after if isinstance(after, Position) else None,
        oldest_first=(params.get("r") or "").strip() == "o",
        exclude=_states(params.getall("xt")),
        include=_states(params.getall("it")),
        newer_than=newer,
        older_than=older,
    )


def ids_key(who: Reader, query: StreamQuery) -> tuple[Any, ...]:
    return ("ids", who.key_id, who.locale, query)


def unread_key(who: Reader) -> tuple[Any, ...]:
    return ("unread", who.key_id, who.locale)


def contents_key(who: Reader, story_ids: list[int], base: str) -> tuple[Any, ...]:
    return ("contents", who.key_id, who.locale, tuple(story_ids), base)


@dataclass
class GreaderService:
    """The database work behind the routes (run in the threadpool)."""

    engine: sa.Engine
    reader: FeedReader
    tokens: Tokens
    public_url: str
    _outlets: tuple[float, dict[str, Outlet]] | None = None
    _rendered: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    """(locale, story) → [the entry's stamp, the context (:meth:`context`) it was rendered in, the
    item, its fragment, the mark of ``_answers`` it was last checked at (None: never trusted
    unchecked), the span a change of its entry is told by (None: not told)]."""
    _states: PageCache[Any] = field(default_factory=lambda: PageCache(KEPT_STATES))
    """Per key, kept until a change of its flags is told (:meth:`epoch`, :meth:`flags`); the
    editors' disclaimers until an editor's action."""
    _contexts: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)
    _last_context: dict[tuple[str, str], tuple[Any, Any, tuple[Any, ...]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _answers: PageCache[tuple[object, Rendered]] = field(default_factory=lambda: PageCache(KEPT_ANSWERS))
    """Built ``stream/items/ids`` and ``unread-count`` answers per key, with the key's epoch they
    were built in (:meth:`kept`)."""

    _aliases: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=OrderedDict)
    _contents: PageCache[tuple[object, Rendered]] = field(default_factory=lambda: PageCache(KEPT_CONTENTS))
    """Whole ``stream/items/contents`` answers (:meth:`items_contents`)."""

    def __post_init__(self) -> None:
        self._contents.follow(self.reader.pages)
        self._answers.follow(self.reader.pages)
        self._states.follow(self.reader.pages)

    def synced(self) -> int | None:
        """Bring everything kept up to the committed changes (``FeedReader.sync_pages``: on SQLite a
        read of the changes since the last, on PostgreSQL the NOTIFY-ed ones) and give the mark an
        answer built now is kept under; None when the database cannot say (nothing kept is used)."""
        return None if self.reader.sync_pages() is None else self._answers.mark()

    def epoch(self, key_id: int) -> object | None:
        """An object that stays the same until a change of ``key_id``'s flags is told: answers built
        from the flags are kept with it and answered only while it is current (a change told
        between building and keeping an answer leaves it with an epoch no longer current)."""
        key = ("epoch", key_id)
        mark = self._states.mark()
        found = self._states.get(key)
        if found is None:
            found = object()
            if not self._states.put(key, mark, found, page_span=(state_key(key_id), None, None)):
                return None
        return found

    def alias(self, raw: tuple[Any, ...], key_id: int, key: tuple[Any, ...]) -> None:
        """Remember that ``raw`` (a request as sent: path, query, form digest, base URL) of ``key_id`` is
        answered by ``key`` (on the event loop only)."""
        aliases = self._aliases
        aliases[(key_id, raw)] = key
        aliases.move_to_end((key_id, raw))
        while len(aliases) > KEPT_ALIASES:
            aliases.popitem(last=False)

    def raw_answer(self, raw: tuple[Any, ...], key_id: int) -> Rendered | None:
        """The kept answer to a request ``key_id`` sent before exactly so (:meth:`alias`): parsing
        150 item ids costs more than answering a kept answer (after :meth:`synced`)."""
        key = self._aliases.get((key_id, raw))
        return None if key is None else self.kept_answer(key, key_id)

    def kept_answer(self, key: tuple[Any, ...], key_id: int) -> Rendered | None:
        """The kept answer for ``key`` while current, reading nothing (after :meth:`synced`)."""
        found = (self._contents if key[0] == "contents" else self._answers).get(key)
        if found is None:
            return None
        epoch = self._states.get(("epoch", key_id))
        return found[1] if epoch is not None and found[0] is epoch else None

    def context(
        self, locale: str, disclaimers: Mapping[Any, Any], by_outlet: Mapping[str, Outlet], base: str
    ) -> tuple[Any, ...]:
        """Everything besides its entry that a rendered item of ``locale`` depends on (the editors'
        disclaimers, the feeds, the base URL), as one shared object per distinct value: a kept item
        is current when its stamp is its entry's and its context *is* this one."""
        last = self._last_context.get((locale, base))
        if last is not None and last[0] is by_outlet and last[1] == disclaimers:
            return last[2]  # the same feeds (kept a few seconds) and disclaimers as the last time
        value = (locale, tuple(sorted(disclaimers.items())), tuple(sorted(by_outlet.items())), base)
        with self._lock:
            if len(self._contexts) > 64:
                self._contexts.clear()  # items kept under a dropped context render anew
                self._last_context.clear()
            found = self._contexts.setdefault(value, value)
            self._last_context[(locale, base)] = (by_outlet, disclaimers, found)
        return found

    def outlets(self, *, fresh: bool = False) -> dict[str, Outlet]:
        """outlet id → subscription (numbers given on first sight), kept a few seconds."""
        cached = self._outlets
        if not fresh and cached is not None and time.monotonic() - cached[0] < OUTLETS_TTL_S:
            return cached[1]
        numbers = feed_numbers(self.engine)
        with self.reader.engine.connect() as conn:
            found = {o.id: o for o in outlets(conn, numbers)}
        self._outlets = (time.monotonic(), found)
        return found

    def feed_outlet(self, stream: Stream) -> str | None:
        if stream.kind != "feed":
            return None
        numbers = {o.id: o.number for o in self.outlets().values()}
        return feed_outlet(numbers, int(stream.value or 0))

    def page(
        self, who: Reader, query: StreamQuery, conn: sa.Connection | None = None, outlet: str | None = None
    ) -> tuple[Sequence[Any], str | None]:
        """(story id, raw publication) of one page, and the continuation when more follow."""
        if conn is None:
            with self.reader.engine.connect() as own:
                return self.page(who, query, own, self.feed_outlet(query.stream))
        statement = compiled_for(page_statement(*page_shape(query)), conn.dialect)
        rows = statement.rows(conn, stream_params(query, who.key_id, who.locale, outlet))
        more = len(rows) > query.n
        rows = rows[: query.n]
        continuation = Position(micros(moment(rows[-1][1])), rows[-1][0]).token() if more and rows else None
        return rows, continuation

    def ids_body(self, who: Reader, query: StreamQuery) -> Rendered:
        """``{"itemRefs": [{"id": "<decimal>"}…], "continuation"?}``, joined as bytes (ids are
        integers); kept (:meth:`kept`) per key and request."""
        outlet = self.feed_outlet(query.stream)

        def build(conn: sa.Connection) -> tuple[Rendered, bool]:
            rows, continuation = self.page(who, query, conn, outlet)
            refs = b",".join(b'{"id":"%d"}' % sid for sid, _ in rows)
            more = (
                b',"continuation":' + pydantic_core.to_json(continuation) if continuation is not None else b""
            )
            rendered = Rendered.of(b'{"itemRefs":[' + refs + b"]" + more + b"}")
            # A feed this process does not know yet (numbered elsewhere moments ago) is answered
            # empty, not kept: the next request knows it.
            return rendered, not (query.stream.kind == "feed" and outlet is None)

        return self.kept(ids_key(who, query), who, build)

    def kept(
        self, key: tuple[Any, ...], who: Reader, build: Callable[[sa.Connection], tuple[Rendered, bool]]
    ) -> Rendered:
        """The answer ``build`` makes from the entries of ``who``'s locale (its default feed) and
        ``who``'s flags, kept until a change of either is told (a change told after the mark taken
        before building keeps it out: never newer than it looks); an answer ``build`` says not to
        keep is answered once."""
        mark = self.synced()
        epoch = None
        if mark is not None:
            found = self.kept_answer(key, who.key_id)
            if found is not None:
                return found
            epoch = self.epoch(who.key_id)
        with self.reader.engine.connect() as conn:
            built, keep = build(conn)
        if keep and epoch is not None:
            self._answers.put(key, mark, (epoch, built), page_span=(who.locale, None, None))
        return built

    def items(
        self, who: Reader, story_ids: list[int], base: str
    ) -> list[tuple[render.Item, bool, bool, render.Fragment, Span | None]]:
        """The stories among ``story_ids`` that have an entry in the key's locale, in that order:
        each as an item (without the key's flags), the key's read and starred flags, its encoded
        JSON without them (:func:`render.item_fragment`) and the span a change of its entry is told
        by (None: never told).

        Rendered items are kept per process by (locale, story) with what they were made from: the
        entry's stamp (renewed by every write of the entry: a story whose members, texts or
        publication change has its entries rewritten; its store time never changes) and the
        context (:meth:`context`: disclaimers, feeds, base URL), and the mark of the changes told
        when that was last checked. An item checked at the current mark (no change told since) is
        current, unless a change of its entry is never told (an entry only found by id). Only the
        others are checked, by one statement that reads their stamps (never the bodies); only items
        kept under another stamp or context are read in full and rendered again. The key's flags
        are kept per key until a change of them is told (:meth:`flags`)."""
        if not story_ids:
            return []
        mark = self.synced()
        by_outlet = self.outlets()
        locale = who.locale
        rendered = self._rendered
        with self.reader.engine.connect() as conn:
            flags = self.flags(conn, who.key_id, mark)
            disclaimers = self.disclaimers(conn, mark)
            context = self.context(locale, disclaimers, by_outlet, base)
            kept: dict[int, list[Any]] = {}
            unchecked = []
            for sid in story_ids:
                cached = rendered.get((locale, sid))
                if cached is not None and cached[4] == mark and mark is not None and cached[1] is context:
                    kept[sid] = cached
                else:
                    unchecked.append(sid)
            if unchecked:
                rows = read_rows(conn, who.key_id, locale, unchecked)
                if any(r[3] and r[3] not in by_outlet for r in rows.values()):
                    by_outlet = self.outlets(fresh=True)
                    context = self.context(locale, disclaimers, by_outlet, base)
                stale: dict[int, tuple[Any, Any]] = {}
                for sid, stamp, *_ in rows.values():
                    cached = rendered.get((locale, sid))
                    if cached is not None and cached[0] == stamp and cached[1] is context:
                        cached[4] = mark if cached[5] is not None else None  # (taken before the stamps)
                        kept[sid] = cached
                    else:
                        stale[sid] = (False, False)
                if stale:
                    self.render_items(conn, locale, read_bodies(conn, who.key_id, locale, stale), mark,
                                      disclaimers, by_outlet, base, kept)  # fmt: skip
        out = []
        no_flags = (False, False)
        for sid in story_ids:
            cached = kept.get(sid)
            if cached is not None:  # not kept: no entry in the locale (or gone between two reads)
                read, starred = flags.get(sid, no_flags)
                out.append((cached[2], read, starred, cached[3], cached[5]))
        return out

    def render_items(
        self,
        conn: sa.Connection,
        locale: str,
        fresh: Mapping[int, Row],
        mark: int | None,
        disclaimers: Mapping[Any, Any],
        by_outlet: Mapping[str, Outlet],
        base: str,
        kept: dict[int, list[Any]],
    ) -> None:
        """Render ``fresh`` rows and keep them (and put them in ``kept``)."""
        if any(r.outlet_id and r.outlet_id not in by_outlet for r in fresh.values()):
            by_outlet = self.outlets(fresh=True)
        context = self.context(locale, disclaimers, by_outlet, base)
        memo: dict[str, Any] = {}
        rendered = self._rendered
        for sid, row in fresh.items():
            if row.policy not in memo:
                memo[row.policy] = self.reader.disclaimer(row.policy, locale, disclaimers)
            item = render.build_item(row, locale, memo[row.policy], render.origin_of(row, by_outlet), base)
            told = row.reach < BY_ID_ONLY  # a change of an entry only found by id is never told
            spot = span(feed_key(locale, row.reach), *(2 * [moment(row.listed_at)])) if told else None
            entry = [row.stamp, context, item, render.item_fragment(item), mark if told else None, spot]
            kept[sid] = entry
            with self._lock:
                rendered[(locale, sid)] = entry
                while len(rendered) > RENDERED_ITEMS:
                    del rendered[next(iter(rendered))]

    def flags(self, conn: sa.Connection, key_id: int, synced: int | None) -> dict[int, tuple[bool, bool]]:
        """story → (read, starred) of ``key_id``, kept until a change of them is told (``synced``:
        what :meth:`synced` said; None: read, not kept)."""
        key = ("flags", key_id)
        mark = self._states.mark()
        found = self._states.get(key) if synced is not None else None
        if found is None:
            found = key_flags(conn, key_id)
            self._states.put(
                key, mark if synced is not None else None, found, page_span=(state_key(key_id), None, None)
            )
        return cast(dict[int, tuple[bool, bool]], found)

    def disclaimers(self, conn: sa.Connection, synced: int | None) -> dict[tuple[str, str], tuple[str, str]]:
        """The editors' disclaimers, kept until an editor's action is told (publishing one is)."""
        mark = self._states.mark()
        found = self._states.get("disclaimers") if synced is not None else None
        if found is None:
            found = self.reader.current_disclaimers(conn)
            self._states.put("disclaimers", mark if synced is not None else None, found, page_span=KEYS_SPAN)
        return cast(dict[tuple[str, str], tuple[str, str]], found)

    def contents(
        self, who: Reader, stream_id: str, story_ids: list[int], base: str, continuation: str | None
    ) -> Rendered:
        items = self.items(who, story_ids, base)
        return render.contents_rendered(
            stream_id,
            [(f, read, starred) for _, read, starred, f, _ in items],
            int(time.time()),
            continuation,
        )

    def items_contents(self, who: Reader, story_ids: list[int], base: str) -> Rendered:
        """``stream/items/contents`` of ``story_ids``: the answer for the same batch kept whole per
        key (apps ask for the same batches from each device, and again after a failed sync), until a
        change of the key's flags or of an entry in the batch's published-at range is told, or
        :data:`KEPT_CONTENTS_S` pass (its ``updated`` is the time it was built). A batch with an
        entry whose changes are never told (found by id only) is not kept."""
        key = contents_key(who, story_ids, base)
        mark = self.synced()
        epoch = None
        if mark is not None:
            found = self.kept_answer(key, who.key_id)
            if found is not None:
                return found
            epoch = self.epoch(who.key_id)
        items = self.items(who, story_ids, base)
        now = time.time()
        rendered = render.contents_rendered(
            READING_LIST, [(f, read, starred) for _, read, starred, f, _ in items], int(now), None
        )
        spots = [spot for *_, spot in items if spot is not None]
        if epoch is not None and len(spots) == len(items):
            # A story without an entry here may get one at any time: then the whole feed key.
            lo = min((s[1] for s in spots if s[1] is not None), default=None)
            hi = max((s[2] for s in spots if s[2] is not None), default=None)
            whole = (
                span(who.locale + UNTRANSLATED_KEY, lo, hi)
                if len(items) == len(story_ids)
                else span(who.locale + UNTRANSLATED_KEY, None, None)
            )
            # Kept as one body, its gzip one compress of the whole, made when it is asked again: a
            # 150-item answer is 23 KB then, not the 83 KB of its items' pieces (a compress costs
            # more than a fresh answer, so the first answer is sent as pieces).
            again = Rendered(rendered.body, rendered.etag, memo=False)
            self._contents.put(key, mark, (epoch, again), now + KEPT_CONTENTS_S, whole)
        return rendered

    def stream_body(self, who: Reader, query: StreamQuery, base: str) -> Rendered:
        rows, continuation = self.page(who, query)
        return self.contents(who, query.stream.id, [sid for sid, _ in rows], base, continuation)

    def atom_body(self, who: Reader, query: StreamQuery, base: str) -> bytes:
        rows, _ = self.page(who, query)
        items = [
            replace(item, read=read, starred=starred)
            for item, read, starred, *_ in self.items(who, [sid for sid, _ in rows], base)
        ]
        title, home = TITLE.get(who.locale, "babelwire"), f"{base}/v1/feed?locale={who.locale}"
        if query.stream.kind == "feed":
            outlet = next((o for o in self.outlets().values() if o.number == query.stream.value), None)
            if outlet is not None:
                title, home = outlet.name, outlet.homepage or home
        updated = max((i.published for i in items), default=datetime(2026, 1, 1, tzinfo=UTC))
        return render.atom_body(query.stream.id, title, home, items, updated, who.locale)

    def subscriptions_body(self) -> bytes:
        return pydantic_core.to_json(
            {
                "subscriptions": [
                    {
                        "id": f"feed/{o.number}",
                        "title": o.name,
                        "categories": [],
                        "url": o.homepage or "",
                        "htmlUrl": o.homepage or "",
                        "iconUrl": "",
                        "sortid": f"{o.number:08X}",
                        "firstitemmsec": "0",
                    }
                    for o in sorted(self.outlets().values(), key=lambda o: o.number)
                ]
            }
        )

    def tags_body(self) -> bytes:
        with self.reader.engine.connect() as conn:
            labels = tickers(conn)
        return pydantic_core.to_json(
            {
                "tags": [
                    {"id": "user/-/state/com.google/starred"},
                    *({"id": f"user/-/label/{t}", "label": t, "type": "tag"} for t in labels),
                ]
            }
        )

    def unread_body(self, who: Reader) -> Rendered:
        """Unread counts per feed (``feed/<n>``), per label (``user/-/label/<ticker>``) and of the
        reading list, each with its newest item's time, as clients expect (FreshRSS's shape); kept
        (:meth:`kept`) per key."""

        def build(conn: sa.Connection) -> tuple[Rendered, bool]:
            counts = unread_counts(conn, who.key_id, who.locale)
            by_outlet = self.outlets()
            if any(kind != LABEL_COUNT and name and name not in by_outlet for kind, name, _, _ in counts):
                by_outlet = self.outlets(fresh=True)
            feeds, labels = [], []
            total, newest_all, complete = 0, 0, True
            for kind, name, count, newest in counts:
                usec = micros(newest)
                if kind == LABEL_COUNT:
                    labels.append(
                        {"id": LABEL_PREFIX + str(name), "count": count, "newestItemTimestampUsec": str(usec)}
                    )
                    continue
                total += count
                newest_all = max(newest_all, usec)
                outlet = by_outlet.get(name or "")
                if outlet is not None:
                    feeds.append(
                        {"id": f"feed/{outlet.number}", "count": count, "newestItemTimestampUsec": str(usec)}
                    )
                elif name:
                    complete = False  # an outlet not numbered yet: answered without it, not kept
            reading = {"id": READING_LIST, "count": total, "newestItemTimestampUsec": str(newest_all)}
            body = Rendered.of(
                pydantic_core.to_json({"max": total, "unreadcounts": [*feeds, *labels, reading]})
            )
            return body, complete

        return self.kept(unread_key(who), who, build)

    def told_here(self, key_id: int) -> None:
        """A change of ``key_id``'s flags this process committed shows in its next answer at once
        (other processes follow the change as told: on PostgreSQL, once its NOTIFY arrives)."""
        self.reader.pages.apply([(state_key(key_id), None, None)])

    def edit(self, who: Reader, story_ids: list[int], read: bool | None, starred: bool | None) -> None:
        with self.engine.begin() as conn:
            set_flags(conn, who.key_id, story_ids, read=read, starred=starred)
        self.told_here(who.key_id)

    def mark_all(self, who: Reader, stream: Stream, before: datetime | None) -> None:
        params: dict[str, Any] = {
            "locale": who.locale,
            "key_id": who.key_id,
            "outlet": self.feed_outlet(stream) or "",
        }
        if stream.kind == "label":
            params["ticker"] = str(stream.value)
        if before is not None:
            params["ts"] = before
        with self.engine.begin() as conn:
            mark_read_from(conn, who.key_id, marked_select(stream.kind, before is not None), params)
        self.told_here(who.key_id)


def install_greader(
    app: FastAPI, *, settings: Settings, engine: sa.Engine, reader: FeedReader, secret: Callable[[], str]
) -> None:
    """Add the ``/greader`` routes and the slash-collapsing middleware to ``app``."""
    tokens = Tokens(engine, secret, reader.pages, reader.sync_pages)
    service = GreaderService(engine, reader, tokens, settings.public_url)
    limiter = LoginLimiter()
    app.state.greader = service
    app.state.greader_logins = limiter
    app.add_middleware(CollapseSlashes)
    inline = engine.dialect.name == "sqlite"
    hot: dict[str, tuple[Callable[[Request], Awaitable[Response]], APIRoute]] = {}

    async def read(fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a read: on the event loop for SQLite (a WAL reader never waits for a
        writer, and its reads cost less than the hand-off to a thread and back), else in the
        threadpool."""
        return fn(*args) if inline else await run_in_threadpool(fn, *args)

    def base_of(request: Request) -> str:
        return settings.public_url or str(request.base_url).rstrip("/")

    Handler = Callable[[Request, Params, Reader], Awaitable[Response]]
    FrontHandler = Callable[[Request, Params, "Asker"], Awaitable[Response]]

    @dataclass
    class Asker:
        """Who sent a hot read: the header, the reader when its token is kept (None: not kept, or
        nothing kept can be trusted now) and the raw request (:meth:`GreaderService.alias`)."""

        header: str | None
        kept: Reader | None
        raw: tuple[Any, ...]

    async def answer(
        asker: Asker, key: Callable[[Reader], tuple[Any, ...]], work: Callable[[Reader], Rendered]
    ) -> Rendered | None:
        """The kept answer for ``key`` when the token is kept: on the loop, reading nothing; else
        the token checked and ``work`` run in one hop (on the loop for SQLite). None: not
        authorized."""
        who = asker.kept
        if who is not None:
            found = service.kept_answer(key(who), who.key_id)
            if found is not None:
                service.alias(asker.raw, who.key_id, key(who))
                return found

        def job() -> tuple[Reader, Rendered] | None:
            checked = who or service.tokens.from_header(asker.header)
            return None if checked is None else (checked, work(checked))

        done = job() if inline else await run_in_threadpool(job)
        if done is None:
            return None
        service.alias(asker.raw, done[0].key_id, key(done[0]))
        return done[1]

    def front(path: str, methods: list[str]) -> Callable[[FrontHandler], FrontHandler]:
        """Register a hot read, also answered ahead of FastAPI's routing (:class:`GreaderFront`).
        A request the same reader sent before (the same query and form, byte for byte) whose answer
        is kept is answered before its parameters are parsed (:meth:`GreaderService.raw_answer`);
        the handler answers the others through :func:`answer`."""

        def register(handler: FrontHandler) -> FrontHandler:
            async def endpoint(request: Request) -> Response:
                header = request.headers.get("authorization")
                body = await request.body() if request.method == "POST" else b""
                form = hashlib.blake2b(body, digest_size=16).digest()  # not the form: 2 MB at most
                raw = (path, request.scope["query_string"], form, base_of(request))
                kept = service.tokens.kept(header) if service.synced() is not None else None
                if kept is not None:
                    found = service.raw_answer(raw, kept.key_id)
                    if found is not None:
                        return cached_response(request, found, PRIVATE)
                params = await read_params(request)
                if isinstance(params, Problem):
                    return error_response(params)
                return await handler(request, params, Asker(header, kept, raw))

            app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
            hot[path] = (endpoint, app.router.routes[-1])  # type: ignore[assignment]
            return handler

        return register

    async def refused(header: str | None, problem: Problem) -> Response:
        """A bad request's answer: 401 first when the token is not good (as for every route)."""
        who = await read(service.tokens.from_header, header)
        return unauthorized() if who is None else error_response(problem)

    def route(path: str, methods: list[str], *, write: bool = False) -> Callable[[Handler], Handler]:
        """Register an authenticated handler: the reader from the header (or, on writes, from ``T``)."""

        def register(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                params = await read_params(request)
                if isinstance(params, Problem):
                    return error_response(params)
                header = request.headers.get("authorization")
                who = await read(service.tokens.from_header, header)
                if who is None and write and not header:
                    who = await run_in_threadpool(
                        service.tokens.from_write_token, (params.get("T") or "").strip()
                    )
                if who is None:
                    return unauthorized()
                return await handler(request, params, who)

            app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
            return handler

        return register

    async def client_login(request: Request) -> Response:
        params = await read_params(request)
        if isinstance(params, Problem):
            return error_response(params)
        address = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(address)
        if wait is not None:
            log.warning("greader login refused for %s: too many failed attempts", address)
            return PlainTextResponse(
                "Error=TooManyAttempts\n",
                status_code=429,
                headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
            )
        who = await run_in_threadpool(
            service.tokens.login, params.get("Email") or "", params.get("Passwd") or ""
        )
        if who is None:
            limiter.failed(address)
            return PlainTextResponse("Error=BadAuthentication\n", status_code=401, headers=BAD_TOKEN)
        token = service.tokens.auth_token(who)
        if (params.get("output") or "").strip() == "json":
            return Response(pydantic_core.to_json({"SID": token, "LSID": token, "Auth": token}),
                            media_type="application/json", headers={"Cache-Control": "no-store"})  # fmt: skip
        return text(f"SID={token}\nLSID={token}\nAuth={token}\n")

    app.add_api_route(
        PREFIX + "/accounts/ClientLogin", client_login, methods=["GET", "POST"], include_in_schema=False
    )

    @route(API + "/token", ["GET", "POST"])
    async def token(request: Request, params: Params, who: Reader) -> Response:
        return text(service.tokens.write_token(who))

    @route(API + "/user-info", ["GET"])
    async def user_info(request: Request, params: Params, who: Reader) -> Response:
        body = {"userId": str(who.key_id), "userName": who.name, "userProfileId": str(who.key_id),
                "userEmail": who.name, "isBloggerUser": False, "signupTimeSec": 0, "isMultiLoginEnabled": False}  # fmt: skip
        return Response(
            pydantic_core.to_json(body), media_type="application/json", headers={"Cache-Control": "no-store"}
        )

    def json_page(request: Request, body: bytes) -> Response:
        return cached_response(request, Rendered.of(body), PRIVATE)

    @route(API + "/subscription/list", ["GET"])
    async def subscription_list(request: Request, params: Params, who: Reader) -> Response:
        return json_page(request, await run_in_threadpool(service.subscriptions_body))

    @route(API + "/tag/list", ["GET"])
    async def tag_list(request: Request, params: Params, who: Reader) -> Response:
        return json_page(request, await run_in_threadpool(service.tags_body))

    @front(API + "/unread-count", ["GET"])
    async def unread_count(request: Request, params: Params, asker: Asker) -> Response:
        rendered = await answer(asker, unread_key, service.unread_body)
        return unauthorized() if rendered is None else cached_response(request, rendered, PRIVATE)

    @front(API + "/stream/items/ids", ["GET", "POST"])
    async def items_ids(request: Request, params: Params, asker: Asker) -> Response:
        query = stream_query(params, params.get("s"), 20)
        if isinstance(query, Problem):
            return await refused(asker.header, query)
        rendered = await answer(
            asker, lambda who: ids_key(who, query), lambda who: service.ids_body(who, query)
        )
        return unauthorized() if rendered is None else cached_response(request, rendered, PRIVATE)

    @front(API + "/stream/items/contents", ["GET", "POST"])
    async def items_contents(request: Request, params: Params, asker: Asker) -> Response:
        ids = list(dict.fromkeys(sid for v in params.getall("i") if (sid := parse_item_id(v)) is not None))
        if len(ids) > MAX_CONTENTS:
            return await refused(
                asker.header, Problem(400, "too_many_items", f"at most {MAX_CONTENTS} i= per call")
            )
        base = base_of(request)
        rendered = await answer(
            asker,
            lambda who: contents_key(who, ids, base),
            lambda who: service.items_contents(who, ids, base),
        )
        return unauthorized() if rendered is None else cached_response(request, rendered, PRIVATE)

    async def contents(request: Request, params: Params, who: Reader, stream_text: str | None) -> Response:
        query = stream_query(params, stream_text, 20)
        if isinstance(query, Problem):
            return error_response(query)
        rendered = await run_in_threadpool(service.stream_body, who, query, base_of(request))
        return cached_response(request, rendered, PRIVATE)

    @route(API + "/stream/contents", ["GET", "POST"])
    async def stream_contents(request: Request, params: Params, who: Reader) -> Response:
        return await contents(request, params, who, params.get("s"))

    @route(API + "/stream/contents/{stream:path}", ["GET", "POST"])
    async def stream_contents_of(request: Request, params: Params, who: Reader) -> Response:
        return await contents(request, params, who, request.path_params["stream"])

    async def atom(request: Request, params: Params, who: Reader, stream_text: str | None) -> Response:
        query = stream_query(params, stream_text, 20)
        if isinstance(query, Problem):
            return error_response(query)
        body = await run_in_threadpool(service.atom_body, who, query, base_of(request))
        return cached_response(request, Rendered.of(body, "application/atom+xml; charset=utf-8"), PRIVATE)

    @route(PREFIX + "/reader/atom", ["GET"])
    async def atom_reading_list(request: Request, params: Params, who: Reader) -> Response:
        return await atom(request, params, who, None)

    @route(PREFIX + "/reader/atom/{stream:path}", ["GET"])
    async def atom_stream(request: Request, params: Params, who: Reader) -> Response:
        return await atom(request, params, who, request.path_params["stream"])

    @route(API + "/edit-tag", ["POST"], write=True)
    async def edit_tag(request: Request, params: Params, who: Reader) -> Response:
        read: bool | None = None
        starred: bool | None = None
        for value in params.getall("a"):
            kind = (parse_stream(value) or Stream("")).kind
            read = True if kind == "read" else read
            starred = True if kind == "starred" else starred
            if kind == "empty" and value.strip().endswith("/kept-unread"):
                read = False
        for value in params.getall("r"):
            kind = (parse_stream(value) or Stream("")).kind
            read = False if kind == "read" else read
            starred = False if kind == "starred" else starred
        ids = [sid for v in params.getall("i") if (sid := parse_item_id(v)) is not None]
        await run_in_threadpool(service.edit, who, ids, read, starred)
        return text("OK")

    @route(API + "/mark-all-as-read", ["POST"], write=True)
    async def mark_all_as_read(request: Request, params: Params, who: Reader) -> Response:
        stream = parse_stream(params.get("s"))
        if stream is None:
            return error_response(Problem(400, "invalid_stream", "unknown stream in s"))
        before = _time(params.get("ts"), "ts")
        if isinstance(before, Problem):
            return error_response(before)
        await run_in_threadpool(service.mark_all, who, stream, before)
        return text("OK")

    async def not_implemented(request: Request) -> Response:
        return text("Not implemented: sources are managed by editors (/v1/admin/sources)", 501)

    for path in ("/subscription/edit", "/subscription/quickadd", "/quickadd"):
        app.add_api_route(API + path, not_implemented, methods=["GET", "POST"], include_in_schema=False)
    app.router.middleware_stack = GreaderFront(app.router.middleware_stack, hot)

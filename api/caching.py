"""HTTP caching for JSON bodies: strong ETags, 304s, gzip, and a short per-process response cache.

The response cache is a micro-cache: a rendered body lives at most ``ttl`` seconds (a second by
default, never longer than the ``Cache-Control`` max-age the client is already allowed to keep
it), bounded in entries, and concurrent misses for one key share one database build. Nothing in
it is needed by another process: each replica fills its own, and losing it costs one rebuild.

Editors' changes must show at once, so a cache may be given a ``generation``: a cheap read of a
value the database changes with every editorial action (the newest audit row). A value built
under another generation is never answered, not even stale. The generation is read at most once
per ``generation_every`` seconds per process (a read on every hit cost 5× the cached throughput);
the process that made the change calls ``clear``, which answers from the database at once, and
every other replica follows within ``generation_every``.

ETags are computed per representation: the gzip body has its own tag (``"…-gz"``), because a
strong validator must differ when the content-coding does. A body may also carry a
``Last-Modified`` time (the feed re-export does): ``If-Modified-Since`` is then honoured when the
request has no ``If-None-Match`` (RFC 9110 §13.2.2: the ETag wins when both are sent).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Generic, TypeVar

import anyio.to_thread
import pydantic_core
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

GZIP_MIN_BYTES = 1000
"""Bodies smaller than this are sent as they are: compressing them gains nothing."""
GZIP_LEVEL = 1
"""A page is compressed once per change of its content (kept pages keep their gzip bytes), so
compressing is most of what a page rebuilt after a write costs: level 1 takes half the CPU of
level 5 for a page of 20 entries (0.9 vs 1.7 ms on the bench machine) for ~25% more bytes (4.6 vs
3.7 KB)."""

T = TypeVar("T")

GENERATION_WAIT_S = 0.5
"""How long a lookup waits, on the event loop, for a new read of the generation; a read that takes
longer (a frozen database) goes on in its thread while lookups see no generation (no cached answer)."""


GZIP_MEMO_ENTRIES = 2048
"""Compressed bodies kept per process, by ETag (see ``Rendered.gzipped``)."""
_gzip_memo: OrderedDict[str, bytes] = OrderedDict()
_gzip_memo_lock = threading.Lock()


def _gzip(etag: str, body: bytes) -> bytes:
    """``body`` compressed, memoized by its ETag: a strong ETag names one body, so the memo can
    never answer stale bytes, and a page read again from the database (the same rows, the same
    bytes) is not compressed again. Nothing in it is needed by another process."""
    with _gzip_memo_lock:
        found = _gzip_memo.get(etag)
        if found is not None:
            _gzip_memo.move_to_end(etag)
            return found
    packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    with _gzip_memo_lock:
        _gzip_memo[etag] = packed
        while len(_gzip_memo) > GZIP_MEMO_ENTRIES:
            _gzip_memo.popitem(last=False)
    return packed


@dataclass
class Rendered:
    """A body with its ETag (JSON unless ``media_type`` says otherwise); the gzip variant is made on
    first demand and kept. ``last_modified`` (aware UTC), when set, is sent as ``Last-Modified``.

    A body may be given as ``make`` instead (``Rendered.later``): its ETag comes from the data it
    is built from, so a revalidation is answered 304 without building it."""

    _body: bytes | None
    etag: str
    media_type: str = "application/json"
    last_modified: datetime | None = None
    _gzip: tuple[bytes, str] | None = field(default=None, repr=False)
    make: Callable[[], bytes] | None = field(default=None, repr=False)
    memo: bool = field(default=True, repr=False)
    """Whether the gzip variant goes through the per-process memo (False: a body kept elsewhere with
    its gzip, too big to keep twice)."""

    @classmethod
    def of(
        cls, body: bytes, media_type: str = "application/json", last_modified: datetime | None = None
    ) -> Rendered:
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        return cls(body, etag, media_type, last_modified)

    @classmethod
    def later(
        cls,
        make: Callable[[], bytes],
        data: bytes,
        media_type: str,
        last_modified: datetime | None = None,
    ) -> Rendered:
        """A body ``make()`` builds on first demand; ``data`` is everything it is built from (its
        hash is the ETag: equal data, equal bytes)."""
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        return cls(None, etag, media_type, last_modified, make=make)

    @property
    def body(self) -> bytes:
        if self._body is None:
            assert self.make is not None
            self._body = self.make()
        return self._body

    @property
    def compressible(self) -> bool:
        """Worth compressing; a body built later is taken to be (a feed document always is)."""
        return self._body is None or len(self._body) >= GZIP_MIN_BYTES

    @classmethod
    def of_json(cls, value: Any) -> Rendered:
        """``value`` (plain dicts, lists, strings, numbers) encoded once, compact UTF-8 JSON — the
        bytes pydantic's ``model_dump_json`` gives for the same data."""
        return cls.of(pydantic_core.to_json(value))

    @property
    def gzip_etag(self) -> str:
        """The gzip representation's ETag, known without compressing (a 304 never compresses)."""
        return self.etag[:-1] + '-gz"'

    def gzipped(self) -> tuple[bytes, str]:
        if self._gzip is None:
            body = self.body
            packed = _gzip(self.etag, body) if self.memo else gzip.compress(body, GZIP_LEVEL, mtime=0)
            self._gzip = (packed, self.gzip_etag)
        return self._gzip


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = part.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


def _matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    tags = (t.strip() for t in if_none_match.split(","))
    return any((t[2:] if t.startswith("W/") else t) == etag for t in tags)


def _not_modified_since(if_modified_since: str, last_modified: datetime) -> bool:
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_modified.replace(microsecond=0) <= since


def cached_response(request: Request, rendered: Rendered, cache_control: str) -> Response:
    """200 with the body (gzip when accepted and worth it), or 304 when the client's copy is current."""
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Language, Accept-Encoding"}
    gzipped = rendered.compressible and _accepts_gzip(request)
    etag = headers["ETag"] = rendered.gzip_etag if gzipped else rendered.etag
    last_modified = rendered.last_modified
    if last_modified is not None and time.time() - last_modified.timestamp() < 1.0:
        # A date has whole seconds: another change within this second would carry the same
        # Last-Modified, so a client's If-Modified-Since could hide it (RFC 9110 8.8.2.2).
        last_modified = None
    if last_modified is not None:
        headers["Last-Modified"] = format_datetime(last_modified.astimezone(UTC), usegmt=True)
    if_none_match = request.headers.get("if-none-match")
    if_modified_since = request.headers.get("if-modified-since")
    if (if_none_match and _matches(if_none_match, etag)) or (
        not if_none_match
        and if_modified_since
        and last_modified is not None
        and _not_modified_since(if_modified_since, last_modified)
    ):
        return Response(status_code=304, headers=headers)  # a revalidation never compresses
    if not gzipped:
        return Response(rendered.body, media_type=rendered.media_type, headers=headers)
    body, _ = rendered.gzipped()
    headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=rendered.media_type, headers=headers)


Span = tuple[str | None, datetime | None, datetime | None]
"""(key, lo, hi), times naive UTC: a kept page's feed key and the published-at range its content
depends on, or a change's (key None: every feed; lo/hi None: unbounded on that side). A key is a
locale, or a locale and a refinement after ``~`` (``en~u``: the feed of ``en`` with more listed):
a change of ``en`` meets the pages of ``en~u`` too, a change of ``en~u`` only those."""
EVERYTHING: Span = (None, None, None)


def _naive(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def span(locale: str | None, lo: datetime | None, hi: datetime | None) -> Span:
    """A span with its times made naive UTC (aware ones converted), so any two compare."""
    return (locale, _naive(lo), _naive(hi))


def meets(change: Span, page: Span) -> bool:
    """The change touches the page: same locale (or every locale) and the ranges overlap (bounds
    inclusive: a change at a page's edge is taken as inside)."""
    if (
        change[0] is not None
        and page[0] is not None
        and change[0] != page[0]
        and not page[0].startswith(change[0] + "~")
    ):
        return False
    c_lo, c_hi, p_lo, p_hi = change[1], change[2], page[1], page[2]
    if c_lo is not None and p_hi is not None and c_lo > p_hi:
        return False
    return not (c_hi is not None and p_lo is not None and c_hi < p_lo)


@dataclass(slots=True)
class _Page(Generic[T]):
    value: T
    span: Span
    valid_until: float


CHANGES_REMEMBERED = 4096
"""Applied changes a page being built may be checked against (see ``PageCache.put``)."""


class PageCache(Generic[T]):
    """Built pages kept while the database says they are current: no TTL.

    A page is kept with its **span** — its locale and the published-at range its content depends on
    (for a keyset page: from its next page's first entry up to its cursor; a first page is open
    upward, a last one downward) — and the moment it stops being right on its own (the next pin in
    its locale ends). The caller feeds in every change the database reports (:meth:`apply`, in
    commit order; ``api.feed.FeedReader.sync_pages``): a page whose span a change meets is dropped,
    the others stay. A page is built from a ``mark()`` taken *before* its rows are read: a change
    applied after that mark and meeting its span keeps it out (the page may predate the change), so
    a page is never kept staler than the changes seen. Bounded (LRU); thread-safe (PostgreSQL builds
    run in the threadpool, the listener applies from its thread). Nothing in it is needed by
    another process: each replica fills its own, and losing it costs one rebuild.
    """

    def __init__(self, max_entries: int = 1024, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._pages: OrderedDict[Hashable, _Page[T]] = OrderedDict()
        self._lock = threading.Lock()
        self._seq = 0
        self._log: deque[tuple[int, Span]] = deque(maxlen=CHANGES_REMEMBERED)
        self.dropped = 0
        """Pages dropped by changes (the bench and tests watch it)."""
        self._followers: list[PageCache[Any]] = []

    def follow(self, leader: PageCache[Any]) -> None:
        """Have every change applied to ``leader`` applied here too (the same changes, in the same
        order): a cache of other values kept by the same spans (the Google Reader API's)."""
        with leader._lock:
            leader._followers.append(self)

    def mark(self) -> int:
        """How many changes were applied: take it before reading a page's rows."""
        return self._seq

    def apply(self, changes: Iterable[Span]) -> None:
        """Drop the kept pages any of ``changes`` meets (``EVERYTHING``: all of them)."""
        batch = list(changes)
        if not batch:
            return
        for follower in self._followers:
            follower.apply(batch)
        by_locale: dict[str | None, list[Span]] = {}
        for change in batch:
            by_locale.setdefault(change[0], []).append(change)
        every = by_locale.get(None, [])
        with self._lock:
            for change in batch:
                self._seq += 1
                self._log.append((self._seq, change))
            if EVERYTHING in every:
                self.dropped += len(self._pages)
                self._pages.clear()
                return
            stale = [
                key
                for key, page in self._pages.items()
                if any(meets(c, page.span) for c in by_locale.get(page.span[0], ()))
                or any(meets(c, page.span) for c in every)
                or (
                    page.span[0] is not None
                    and "~" in page.span[0]
                    and any(meets(c, page.span) for c in by_locale.get(page.span[0].split("~", 1)[0], ()))
                )
            ]
            for key in stale:
                del self._pages[key]
            self.dropped += len(stale)

    def get(self, key: Hashable) -> T | None:
        if self.max_entries <= 0:
            return None
        with self._lock:
            page = self._pages.get(key)
            if page is None:
                return None
            if self._clock() >= page.valid_until:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return page.value

    def put(
        self,
        key: Hashable,
        mark: int | None,
        value: T,
        valid_until: float = float("inf"),
        page_span: Span = EVERYTHING,
    ) -> bool:
        """Keep ``value`` built from ``mark`` (None: the database could not say; never kept) unless
        a change applied since meets ``page_span`` (or is no longer remembered). True when kept."""
        if mark is None or self.max_entries <= 0:
            return False
        with self._lock:
            if mark < self._seq:
                if not self._log or self._log[0][0] > mark + 1:
                    return False  # changes since the mark are forgotten: cannot tell
                for seq, change in reversed(self._log):
                    if seq <= mark:
                        break
                    if meets(change, page_span):
                        return False
            self._pages[key] = _Page(value, page_span, valid_until)
            self._pages.move_to_end(key)
            while len(self._pages) > self.max_entries:
                self._pages.popitem(last=False)
            return True

    def clear(self) -> None:
        """Drop every kept page, and keep out a page being built from before now (a change)."""
        self.apply([EVERYTHING])

    def __len__(self) -> int:
        return len(self._pages)


@dataclass
class _Entry(Generic[T]):
    value: T
    expires: float
    generation: object = None


class ResponseCache(Generic[T]):
    """A TTL + LRU cache of built values, with one build in flight per key (single flight).

    A value past its ``ttl`` but within ``stale`` more seconds is still answered while one
    background build refreshes it (stale-while-revalidate), so requests never queue behind the
    database for a hot key; older values are rebuilt before answering.

    Builds run in worker threads, at most ``concurrency`` at once: past a few, more threads only
    fight over the GIL and the connection pool, and every request gets slower. With ``inline``
    they run on the event loop instead: for SQLite, whose read of a page costs less than the
    hand-off to a thread and back (on a loaded machine the wake-up of the thread alone costs
    milliseconds); a WAL reader never waits for a writer.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = 512,
        record: Callable[[str], None] | None = None,
        concurrency: int = 8,
        stale: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        generation: Callable[[], object] | None = None,
        generation_every: float = 0.25,
        inline: bool = False,
    ) -> None:
        self.ttl = ttl
        self.inline = inline
        self._generation = generation
        self._generation_every = generation_every
        self._generation_seen: object = None
        self._generation_read_at: float | None = None
        self._generation_reading: concurrent.futures.Future[object] | None = None
        self._generation_reader: concurrent.futures.ThreadPoolExecutor | None = None
        self.stale = 4 * ttl if stale is None else stale
        self.max_entries = max_entries
        self._clock = clock
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._record = record or (lambda result: None)
        self._entries: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[T]] = {}
        self._aliases: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()

    def clear(self) -> None:
        """Forget every value (an editor changed what they were built from), and read the
        generation again on the next lookup."""
        self._entries.clear()
        self._aliases.clear()
        self._generation_read_at = None
        self._generation_reading = None  # a read in flight may predate the change: not used

    def alias(self, raw: Hashable, key: Hashable, extra: Any) -> None:
        """Let ``lookup_raw(raw)`` find the value of ``key`` (with ``extra``) while it is fresh."""
        if self.ttl <= 0 or key not in self._entries:
            return
        self._aliases[raw] = (key, extra)
        self._aliases.move_to_end(raw)
        while len(self._aliases) > 8 * self.max_entries:
            self._aliases.popitem(last=False)

    def lookup_raw(self, raw: Hashable) -> tuple[T, Any] | None:
        """The fresh value an earlier request with the same raw key was answered with, if any."""
        found = self._aliases.get(raw)
        if found is None:
            return None
        entry = self._entries.get(found[0])
        if entry is None or entry.expires <= self._clock() or not self._current(entry):
            del self._aliases[raw]
            return None
        self._record("hit")
        return entry.value, found[1]

    async def get(self, key: Hashable, build: Callable[[], T], keep: Callable[[T], bool]) -> T:
        """The cached value for ``key``, else ``build()`` run in the threadpool; ``keep`` says
        whether a built value may be cached (errors are not)."""
        if self.ttl <= 0:
            return await self._build(build)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and not self._current(entry):
            del self._entries[key]
            entry = None
        if entry is not None and entry.expires > now:
            self._entries.move_to_end(key)
            self._record("hit")
            return entry.value
        pending = self._pending.get(key)
        if entry is not None and entry.expires + self.stale > now:
            self._record("stale")
            if pending is None:
                self._start(key, build, keep)
            return entry.value
        if pending is not None:
            self._record("shared")
        else:
            self._record("miss")
            pending = self._start(key, build, keep)
        return await asyncio.shield(pending)

    def _current(self, entry: _Entry[T]) -> bool:
        """The entry was built under the database's current generation (always, without one)."""
        if self._generation is None:
            return True
        now = self._current_generation()
        return now is not None and now == entry.generation

    def _current_generation(self) -> object:
        """The database's generation, read again when the last read is ``generation_every`` old
        (a failed read is not remembered: the next lookup tries again)."""
        assert self._generation is not None
        now = self._clock()
        read_at = self._generation_read_at
        if read_at is None or now - read_at >= self._generation_every or now < read_at:
            self._generation_seen = self._read_generation()
            self._generation_read_at = now if self._generation_seen is not None else None
        return self._generation_seen

    def _read_generation(self) -> object:
        """The generation, read in a thread and waited for at most ``GENERATION_WAIT_S``, so a
        database that does not answer (frozen) stalls the event loop that once, not per lookup:
        until that read ends, lookups get None at once (nothing cached is answered). Inline (SQLite,
        a local file) it is read on the loop."""
        assert self._generation is not None
        if self.inline:
            return self._generation()
        reading, wait_s = self._generation_reading, 0.0
        if reading is None:
            if self._generation_reader is None:
                self._generation_reader = concurrent.futures.ThreadPoolExecutor(1, "cache-generation")
            reading = self._generation_reading = self._generation_reader.submit(self._generation)
            wait_s = GENERATION_WAIT_S
        if not concurrent.futures.wait([reading], timeout=wait_s).done:
            return None
        self._generation_reading = None
        return reading.result()

    def _start(self, key: Hashable, build: Callable[[], T], keep: Callable[[T], bool]) -> asyncio.Future[T]:
        generation = self._current_generation() if self._generation is not None else None
        pending = asyncio.ensure_future(self._build(build))
        self._pending[key] = pending
        pending.add_done_callback(lambda fut: self._settle(key, fut, keep, generation))
        return pending

    async def _build(self, build: Callable[[], T]) -> T:
        if self.inline:
            return build()
        return await anyio.to_thread.run_sync(build, limiter=self._limiter)

    def _settle(
        self, key: Hashable, fut: asyncio.Future[T], keep: Callable[[T], bool], generation: object
    ) -> None:
        self._pending.pop(key, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        value = fut.result()
        if keep(value) and (self._generation is None or generation is not None):
            self._entries[key] = _Entry(value, self._clock() + self.ttl, generation)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def raw_key(scope: Scope) -> tuple[str, bytes, bytes, bytes]:
    """What a cached response depends on, straight from the request: path, query string,
    Accept-Language and Host (the re-exported feeds write absolute links from it; encoding and
    the validators are applied per request by ``cached_response``)."""
    language = host = b""
    for name, value in scope["headers"]:
        if name == b"accept-language":
            language = value
        elif name == b"host":
            host = value
    return scope["path"], scope["query_string"], language, host


class CacheFront:
    """Answers a GET from the response cache before routing, when the same raw request was answered
    moments ago.

    Parameter parsing and validation in FastAPI cost more than the rest of a cached response, so a
    repeat of an identical request (the common case: every app opening the first page of its
    locale) skips them. Only requests a route chose to alias (``ResponseCache.alias``) are
    served here, so errors and uncached routes always go through the app.
    """

    def __init__(self, app: ASGIApp, cache: ResponseCache[Any]) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and self.cache.ttl > 0:
            found = self.cache.lookup_raw(raw_key(scope))
            if found is not None:
                rendered, (cache_control, route) = found
                scope["route"] = route
                await cached_response(Request(scope), rendered, cache_control)(scope, receive, send)
                return
        await self.app(scope, receive, send)

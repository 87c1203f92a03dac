"""The re-export routes: ``/v1/feed.rss``, ``/v1/feed.atom``, ``/v1/feed.json`` and ``/v1/feeds.opml``.

Same parameters, validation, page, order and cursor as ``/v1/feed`` (``api.params.feed_query``,
``FeedReader.feed_rows``: the page's stored entries with their stories' ``updated_at``, one
statement); bodies go through the app's response cache and ``cached_response`` (ETag and
Last-Modified → 304, gzip, ``Cache-Control`` like ``/v1/feed``). The ETag is a hash of what the
document is built from, so a revalidation is answered without building it. A bad parameter is a
400 in the format asked for: ``<error><code/><message/></error>`` for RSS and Atom, the API's JSON
error for JSON Feed — never a 422 (``limit`` is checked here for that reason). ``api.hotpath``
answers the feed routes' GETs with the same code, ahead of FastAPI's parameter machinery.
"""

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from starlette.responses import Response

from aggregator.entries import as_utc
from aggregator.settings import Settings
from aggregator.websub import FORMATS
from api.caching import Rendered, ResponseCache, cached_response, raw_key
from api.errors import (
    DATABASE_UNAVAILABLE,
    Problem,
    database_down,
    error_response,
    error_responses,
    problem_headers,
)
from api.export import atom, jsonfeed, opml, rss
from api.export.document import (
    EMPTY_FEED_UPDATED,
    ExportEntry,
    FeedDocument,
    build_document,
    build_entry,
    esc,
)
from api.feed import FeedQuery, FeedReader, FeedRows, PageEntry
from api.hotpath import HotHandler
from api.params import MAX_TICKERS, export_limit, export_untranslated, feed_query

log = logging.getLogger(__name__)
WRITERS: Mapping[str, tuple[Callable[[FeedDocument], bytes], str]] = {
    "rss": (rss.render, rss.MEDIA_TYPE),
    "atom": (atom.render, atom.MEDIA_TYPE),
    "json": (jsonfeed.render, jsonfeed.MEDIA_TYPE),
}


@dataclass(frozen=True)
class Writer:
    """A format written in three parts: the head, each entry (``sep`` between them), the tail."""

    head: Callable[[FeedDocument], bytes]
    entry: Callable[[ExportEntry], bytes]
    tail: bytes
    sep: bytes = b""


PARTS: Mapping[str, Writer] = {
    "rss": Writer(rss.render_head, rss.render_entry, rss.TAIL),
    "atom": Writer(atom.render_head, atom.render_entry, atom.TAIL),
    "json": Writer(jsonfeed.render_head, jsonfeed.render_entry, jsonfeed.TAIL, b","),
}
FRAGMENTS_KEPT = 4096


class EntryFragments:
    """Rendered entries, kept per process by (format, requested locale, stored entry with its
    disclaimer): what an entry renders to depends on those alone, so a kept fragment is never stale
    (a changed entry is another key) and a page read again from the database is written from
    them. Bounded (least recently used out); nothing in it is needed by another process."""

    def __init__(self, size: int = FRAGMENTS_KEPT) -> None:
        self.size = size
        self._kept: OrderedDict[tuple[str, str, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, fmt: str, locale: str, entry: PageEntry) -> bytes:
        key = (fmt, locale, entry.json)
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        value = json.loads(entry.json)
        fragment = PARTS[fmt].entry(build_entry(value, locale, value["disclaimer"]))
        with self._lock:
            self._kept[key] = fragment
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return fragment


SUMMARIES = {
    "rss": "Localized feed as RSS 2.0",
    "atom": "Localized feed as Atom 1.0",
    "json": "Localized feed as JSON Feed 1.1",
}


def database_unavailable(request: Request, error: Callable[[Problem], Response], exc: Exception) -> Response:
    """A 503 in the format asked for, like any other error of these routes (the app's handler would
    answer JSON to a feed reader)."""
    log.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
    return error(DATABASE_UNAVAILABLE)


def xml_error(problem: Problem) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f"<error><code>{esc(problem.code)}</code><message>{esc(problem.message)}</message></error>\n"
    )
    return Response(
        body.encode(),
        status_code=problem.status,
        media_type="application/xml; charset=utf-8",
        headers=problem_headers(problem),
    )


def feed_updated(rows: FeedRows) -> datetime:
    """The feed's ``updated`` (and ``Last-Modified``): its newest entry's publication or story
    change (a page changes when a story gains a member), as ``build_document`` works it out."""
    return max((as_utc(max(e.published_at, e.updated_at)) for e in rows.entries), default=EMPTY_FEED_UPDATED)


def install_export_routes(
    app: FastAPI, *, settings: Settings, reader: FeedReader, cache: ResponseCache[Any]
) -> dict[str, HotHandler]:
    """Add the routes; returns the handlers ``api.hotpath`` answers the feed routes with (path →
    handler), which take the query string as the documented routes do."""
    public = f"public, max-age={settings.cache_max_age_s}"
    hub = settings.websub_hub or None
    fragments = EntryFragments()

    def base_of(request: Request) -> str:
        return settings.public_url or str(request.base_url).rstrip("/")

    async def serve(
        request: Request,
        key: tuple[object, ...],
        build: Callable[[], Rendered | Problem],
        error: Callable[[Problem], Response],
    ) -> Response:
        try:
            value = await cache.get(key, build, lambda v: isinstance(v, Rendered))
        except Exception as exc:
            if not database_down(exc):
                raise
            return database_unavailable(request, error, exc)
        if isinstance(value, Problem):
            return error(value)
        cache.alias(raw_key(request.scope), key, (public, request.scope.get("route")))
        return cached_response(request, value, public)

    def build_feed(
        fmt: str, query: FeedQuery, base: str, filters: Mapping[str, str | None]
    ) -> Rendered | Problem:
        """The page read in one statement; its ETag from what the document is made of, so a
        revalidation is answered before the document is built."""
        rows = reader.feed_rows(query)
        if isinstance(rows, Problem):
            return rows
        return rows.derived(
            ("export", fmt, base, tuple(sorted(filters.items()))),
            lambda: _document(fmt, query, base, filters, rows),
        )

    def _document(
        fmt: str, query: FeedQuery, base: str, filters: Mapping[str, str | None], rows: FeedRows
    ) -> Rendered:
        """The document of ``rows`` (kept with the page: ``FeedRows.derived``)."""
        media_type = WRITERS[fmt][1]
        updated = feed_updated(rows)

        def make() -> bytes:
            """``WRITERS[fmt]`` of the whole document, byte for byte, from kept entry fragments."""
            head = build_document(
                {"items": [], "next_cursor": rows.next_cursor},
                base=base,
                locale=query.locale,
                filters=filters,
                formats=FORMATS,
                hub=hub,
                updated_at={},
                updated=updated,
            )
            parts = PARTS[fmt]
            entries = parts.sep.join(fragments.get(fmt, query.locale, e) for e in rows.entries)
            return b"".join((parts.head(head), entries, parts.tail))

        data = b"\0".join(
            (
                fmt.encode(),
                base.encode(),
                repr(sorted(filters.items())).encode(),
                (hub or "").encode(),
                rows.body(),
                *(e.updated_at.isoformat().encode() for e in rows.entries),
            )
        )
        return Rendered.later(make, data, media_type, updated if rows.entries else None)

    async def respond(
        request: Request, fmt: str, params: Mapping[str, str | None], accept_language: str | None
    ) -> Response:
        error = error_response if fmt == "json" else xml_error
        untranslated = export_untranslated(params.get("untranslated"))
        if isinstance(untranslated, Problem):
            return error(untranslated)
        limit = params.get("limit")
        size = export_limit(limit, settings.feed_default_limit, settings.feed_max_limit)
        if isinstance(size, Problem):
            return error(size)
        cursor, outlet = params.get("cursor"), params.get("outlet")
        try:  # a cursor is checked with the secret the database keeps (read once)
            query = feed_query(
                reader.signer,
                locale=params.get("locale"),
                accept_language=accept_language,
                cursor=cursor,
                limit=size,
                tickers=params.get("tickers"),
                outlet=outlet,
                untranslated=untranslated,
            )
        except Exception as exc:
            if not database_down(exc):
                raise
            return database_unavailable(request, error, exc)
        if isinstance(query, Problem):
            return error(query)
        base = base_of(request)
        filters = {
            "tickers": ",".join(query.tickers) or None,
            "outlet": outlet,
            "limit": str(size) if limit is not None else None,
            "untranslated": "include" if query.untranslated else None,
            "cursor": cursor,
        }
        kept = reader.kept_page(query)  # current: answered on the loop, no thread hop on PostgreSQL
        if kept is not None:
            document = kept.derived(
                ("export", fmt, base, tuple(sorted(filters.items()))),
                lambda: _document(fmt, query, base, filters, kept),
            )
            return cached_response(request, document, public)
        return await serve(
            request,
            ("export", fmt, query, base, filters["limit"]),
            lambda: build_feed(fmt, query, base, filters),
            error,
        )

    def add_feed_route(fmt: str) -> HotHandler:
        async def route(
            request: Request,
            locale: Annotated[
                str | None, Query(description="As `/v1/feed`; `Accept-Language` decides when absent.")
            ] = None,
            cursor: Annotated[
                str | None, Query(description="As `/v1/feed` (the `next` link carries it).")
            ] = None,
            limit: Annotated[
                str | None,
                Query(
                    description=f"Entries per page, 1-{settings.feed_max_limit} "
                    f"(default {settings.feed_default_limit}); 400 otherwise."
                ),
            ] = None,
            tickers: Annotated[
                str | None, Query(description=f"As `/v1/feed`: comma-separated, at most {MAX_TICKERS}.")
            ] = None,
            outlet: Annotated[str | None, Query(description="As `/v1/feed`: one outlet id.")] = None,
            untranslated: Annotated[
                str | None,
                Query(description="As `/v1/feed`: `include` adds the stories with no version in the chain."),
            ] = None,
            accept_language: Annotated[str | None, Header()] = None,
        ) -> Response:
            params = {
                "locale": locale, "cursor": cursor, "limit": limit, "tickers": tickers, "outlet": outlet,
                "untranslated": untranslated,
            }  # fmt: skip
            return await respond(request, fmt, params, accept_language)

        async def hot(request: Request, params: Mapping[str, str]) -> Response:
            return await respond(request, fmt, params, request.headers.get("accept-language"))

        app.add_api_route(
            f"/v1/feed.{fmt}",
            route,
            methods=["GET"],
            tags=["feed"],
            summary=SUMMARIES[fmt],
            description="The stories of `/v1/feed` (same parameters, order and cursor) for feed readers: "
            "`rel=next` paging (RFC 5005), `ETag`/`Last-Modified` → 304, gzip, WebSub `rel=hub` when "
            "`BABELWIRE_WEBSUB_HUB` is set. Entry ids never change.",
            response_class=Response,
            responses={
                200: {"content": {WRITERS[fmt][1].split(";")[0]: {}}, "description": "The feed."},
                304: {"description": "Not modified."},
                400: {"description": "Bad parameter (an XML `<error>` for RSS/Atom, JSON for JSON Feed)."},
                **error_responses(422),
            },
        )
        return hot

    handlers = {f"/v1/feed.{fmt}": add_feed_route(fmt) for fmt in FORMATS}

    @app.get(
        "/v1/feeds.opml",
        tags=["feed"],
        summary="OPML 2.0 list of every locale's feed in every format",
        response_class=Response,
        responses={
            200: {"content": {"text/x-opml": {}}, "description": "The list."},
            304: {"description": "Not modified."},
        },
    )
    async def feeds_opml(request: Request) -> Response:
        base = base_of(request)
        return await serve(
            request, ("opml", base), lambda: Rendered.of(opml.render(base), opml.MEDIA_TYPE), error_response
        )

    return handlers

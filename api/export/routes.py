"""The re-export routes: ``/v1/feed.rss``, ``/v1/feed.atom``, ``/v1/feed.json`` and ``/v1/feeds.opml``.

Same parameters, validation, page, order and cursor as ``/v1/feed`` (``api.params.feed_query``,
``FeedReader.feed_page``); bodies go through the app's response cache and ``cached_response``
(ETag and Last-Modified → 304, gzip, ``Cache-Control`` like ``/v1/feed``). A bad parameter is a
400 in the format asked for: ``<error><code/><message/></error>`` for RSS and Atom, the API's JSON
error for JSON Feed — never a 422 (``limit`` is checked here for that reason).
"""

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import FastAPI, Header, Query, Request
from sqlmodel import SQLModel
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
from api.export.document import FeedDocument, Json, build_document, esc
from api.feed import FeedQuery, FeedReader
from api.params import MAX_TICKERS, feed_query

log = logging.getLogger(__name__)
STORY = SQLModel.metadata.tables["story"]

UPDATED_AT = sa.select(STORY.c.id, STORY.c.updated_at).where(
    STORY.c.id.in_(sa.bindparam("ids", expanding=True))
)
WRITERS: Mapping[str, tuple[Callable[[FeedDocument], bytes], str]] = {
    "rss": (rss.render, rss.MEDIA_TYPE),
    "atom": (atom.render, atom.MEDIA_TYPE),
    "json": (jsonfeed.render, jsonfeed.MEDIA_TYPE),
}
SUMMARIES = {
    "rss": "Localized feed as RSS 2.0",
    "atom": "Localized feed as Atom 1.0",
    "json": "Localized feed as JSON Feed 1.1",
}


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


def updated_at(reader: FeedReader, page: Json) -> dict[int, datetime]:
    """Each story's ``updated_at`` (one small statement): the feed's ``updated`` and ``Last-Modified``."""
    ids = [e["id"] for e in page["items"]]
    if not ids:
        return {}
    with reader.engine.connect() as conn:
        return {sid: as_utc(at) for sid, at in conn.execute(UPDATED_AT, {"ids": ids})}


def install_export_routes(
    app: FastAPI, *, settings: Settings, reader: FeedReader, cache: ResponseCache[Any]
) -> None:
    public = f"public, max-age={settings.cache_max_age_s}"

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
            # In the format asked for, like any other error of these routes (the app's handler
            # would answer JSON to a feed reader).
            log.warning("database unavailable on %s: %s", request.url.path, type(exc).__name__)
            return error(DATABASE_UNAVAILABLE)
        if isinstance(value, Problem):
            return error(value)
        cache.alias(raw_key(request.scope), key, (public, request.scope.get("route")))
        return cached_response(request, value, public)

    def build_feed(
        fmt: str, query: FeedQuery, base: str, filters: Mapping[str, str | None]
    ) -> Rendered | Problem:
        page = reader.feed_page(query)
        if isinstance(page, Problem):
            return page
        updated = updated_at(reader, page)
        doc = build_document(
            page,
            base=base,
            locale=query.locale,
            filters=filters,
            formats=FORMATS,
            hub=settings.websub_hub or None,
            updated_at=updated,
        )
        write, media_type = WRITERS[fmt]
        return Rendered.of(write(doc), media_type, doc.updated if doc.entries else None)

    def add_feed_route(fmt: str) -> None:
        error = error_response if fmt == "json" else xml_error

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
            if untranslated not in (None, "exclude", "include"):
                return error(
                    Problem(
                        400,
                        "invalid_parameter",
                        f"untranslated must be exclude or include, got {untranslated[:20]!r}",
                    )
                )
            size = settings.feed_default_limit
            if limit is not None:
                size = int(limit) if limit.strip().isdigit() and len(limit) < 8 else 0
                if not 1 <= size <= settings.feed_max_limit:
                    return error(
                        Problem(
                            400,
                            "invalid_parameter",
                            f"limit must be 1-{settings.feed_max_limit}, got {limit[:20]!r}",
                        )
                    )
            try:  # a cursor is checked with the secret the database keeps (read once)
                query = feed_query(
                    reader.signer,
                    locale=locale,
                    accept_language=accept_language,
                    cursor=cursor,
                    limit=size,
                    tickers=tickers,
                    outlet=outlet,
                    untranslated=untranslated == "include",
                )
            except Exception as exc:
                if not database_down(exc):
                    raise
                return error(DATABASE_UNAVAILABLE)
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
            return await serve(
                request,
                ("export", fmt, query, base, filters["limit"]),
                lambda: build_feed(fmt, query, base, filters),
                error,
            )

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

    for fmt in FORMATS:
        add_feed_route(fmt)

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

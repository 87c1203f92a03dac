"""The read API: ``create_app(settings, engine)`` builds it; ``main.py serve`` runs it with uvicorn.

Nothing is created at import time. Routes are ``async`` to answer from the per-process response
micro-cache without a thread hop; a page's database read runs in the threadpool on PostgreSQL and
on the event loop on SQLite (cheaper than the hop; see ``api.caching`` for the cache, and for
``CacheFront``, which answers an identical repeat of a request before FastAPI parses its
parameters).

Middleware, outermost first: metrics → gzip (for bodies the routes did not compress: /docs,
/openapi.json) → cache front → FastAPI (error handlers in ``api.errors``) → hot routes
(``api.hotpath``: ``/v1/feed``, its re-exports and the bench ceiling, ahead of FastAPI's parameter
machinery) → router.
"""

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import sqlalchemy as sa
import sqlalchemy.exc
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from aggregator.appstate import shared_secret
from aggregator.entries import ensure_entries
from aggregator.migrate import current_revision, head_revision
from aggregator.settings import Settings
from api.admin.routes import admin_router
from api.caching import GZIP_MIN_BYTES, CacheFront, Rendered, ResponseCache, cached_response, raw_key
from api.cursor import TokenSigner
from api.dashboard.routes import STATIC as DASHBOARD_STATIC
from api.dashboard.routes import dashboard_router
from api.errors import Problem, error_response, error_responses, install_error_handlers
from api.export.routes import install_export_routes
from api.feed import FeedQuery, FeedReader, FeedRows
from api.greader.routes import install_greader
from api.hotpath import install_hot_routes
from api.locales import Chain, parse_fallbacks
from api.metrics import ApiMetrics, MetricsMiddleware
from api.params import MAX_TICKERS, feed_query, hot_limit, resolve_locale
from api.schemas import ChangesPage, FeedPage, Health, Readiness, StoryDetail

log = logging.getLogger(__name__)
GREADER_SECRET = "greader_secret"
"""``appstate`` key of the secret the Google Reader API's tokens are signed with."""
KNOWN_QUERIES = 4096
"""Validated ``/v1/feed`` queries kept per process (see ``hot_feed``)."""
CEILING_LOCALE = "en"
"""``/bench/ceiling`` answers the bytes of this locale's first feed page, built once per process."""

DESCRIPTION = """
Multilingual crypto news, one **story** per article across thirteen locales
(`zh-CN en vi zh-TW es ru fr pt-PT id ja ar uk pt-BR`).

* **Feed screen**: `GET /v1/feed?locale=pt-PT` → `items` newest first; pass `next_cursor` back as
  `cursor` for the next page (stop when it is null). The feed holds the stories readable in the
  reader's language: those with a version in the requested locale or its fallback chain
  (pt-PT → pt-BR → en, zh-TW → zh-CN converted to Traditional → en, uk → en, others → en; uk
  readers are never served Russian). Each entry says which locale it is in (`locale_served`).
  `untranslated=include` adds the other stories, served in their original's locale and marked
  `untranslated: true`.
* **Disclaimer**: each entry carries the disclaimer of its outlet's policy in the *requested*
  locale, whatever locale the entry is served in (the next locale of the chain only when no text
  exists for the requested one).
* **Detail screen**: `GET /v1/stories/{id}` — the same entry plus every member.
* **Sync**: `GET /v1/feed/changes` once to get a token, then `?since=token` for what changed.
* **Caching**: responses carry a strong `ETag`; send it back in `If-None-Match` to get `304`.
* **Errors** are always JSON `{"error": {"code", "message"}}`.
"""

LocaleParam = Annotated[
    str | None,
    Query(
        description="One of the thirteen locales (case-insensitive). When absent, `Accept-Language` decides; "
        "`en` when that is absent too.",
        examples=["pt-PT"],
    ),
]
AcceptLanguage = Annotated[
    str | None,
    Header(
        description="Used when `locale` is absent; q-values honoured. `pt` → pt-PT, `pt-BR` → pt-BR, "
        "`zh-Hant`/`zh-HK` → zh-TW, `zh`/`zh-Hans` → zh-CN.",
        examples=["pt-BR,pt;q=0.9,en;q=0.5"],
    ),
]


def editorial_generation(engine: sa.Engine) -> int | None:
    """The newest audit row's id: every editorial action writes one, in any process. None when
    the database cannot say (nothing cached is answered then)."""
    try:
        with engine.connect() as conn:
            return int(conn.execute(_NEWEST_AUDIT).scalar() or 0)
    except sqlalchemy.exc.SQLAlchemyError:
        return None


_NEWEST_AUDIT = sa.text("SELECT max(id) FROM auditlog")


def _json(page: FeedRows) -> Rendered:
    """The ``FeedPage`` body of ``page``, kept with it."""
    return page.derived("json", lambda: Rendered.of(page.body()))


def _keep(value: object) -> bool:
    return isinstance(value, Rendered)


def create_app(
    settings: Settings,
    engine: sa.Engine,
    *,
    fallbacks: Mapping[str, Chain] | None = None,
    seed_disclaimers: Mapping[tuple[str, str], str] | None = None,
    response_cache_s: float | None = None,
    editorial_check_s: float = 0.25,
) -> FastAPI:
    """The API over ``engine``.

    ``fallbacks`` replaces the locale fallback table (default: ``api.locales.FALLBACKS`` with the
    rows of ``settings.locale_fallbacks``);
    ``seed_disclaimers`` the bundled disclaimer texts (default: ``sources/disclaimers.toml``);
    ``response_cache_s`` the micro-cache lifetime (default: ``settings.response_cache_s``, off unless
    set; capped by the Cache-Control max-age; 0 turns it off);
    ``editorial_check_s`` how often the cache reads the editorial generation (the newest audit
    row) to drop values an editor's change made stale in another process (0: on every hit).
    """
    if fallbacks is None:
        fallbacks = parse_fallbacks(settings.locale_fallbacks)
    if seed_disclaimers is None:
        from sources.disclaimers import load_disclaimers

        seed_disclaimers = load_disclaimers()
    if response_cache_s is None:
        response_cache_s = min(settings.response_cache_s, float(settings.cache_max_age_s))
    head = head_revision()
    metrics = ApiMetrics()
    secret = settings.cursor_secret or (lambda: shared_secret(engine))
    reader = FeedReader(engine, TokenSigner(secret), fallbacks=fallbacks, seed_disclaimers=seed_disclaimers)
    table = fallbacks

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        """Make the stored feed entries the ones this app's fallback table gives (a no-op unless
        the table changed or the database predates the entries)."""
        try:
            if await run_in_threadpool(ensure_entries, engine, table):
                log.info("feed entries rewritten for this fallback table")
        except sqlalchemy.exc.SQLAlchemyError as exc:
            log.warning("feed entries not checked (database: %s); /readyz says why", type(exc).__name__)
        yield
        reader.close()

    cache: ResponseCache[Rendered | Problem] = ResponseCache(
        response_cache_s,
        record=lambda result: metrics.cache.labels(result).inc(),
        generation=lambda: editorial_generation(reader.engine),
        generation_every=editorial_check_s,
        inline=engine.dialect.name == "sqlite",
    )
    public = f"public, max-age={settings.cache_max_age_s}"

    app = FastAPI(
        title="babelwire",
        version="0.1.0",
        summary="Localized crypto-news feeds for the mobile app.",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "feed", "description": "The localized feed, stories, and delta sync."},
            {"name": "ops", "description": "Health, readiness and metrics."},
            {"name": "admin", "description": "Editors and admins (Bearer API key with a role)."},
        ],
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(CacheFront, cache=cache)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=5)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.reader = reader
    app.state.metrics = metrics
    app.state.response_cache = cache
    app.state.engine = engine

    def edited() -> None:
        """An editor's change through this process shows here at once (other replicas follow the
        database: the page change the audit records, read per request or NOTIFY-ed)."""
        cache.clear()
        reader.pages.clear()

    app.include_router(admin_router(engine, on_change=edited))
    app.include_router(dashboard_router(engine, secret, on_change=edited))
    app.mount("/dashboard/static", StaticFiles(directory=DASHBOARD_STATIC), name="dashboard-static")

    async def _serve(
        request: Request, key: tuple[object, ...], build: Callable[[], Rendered | Problem], cache_control: str
    ) -> Response:
        value = await cache.get(key, build, _keep)
        if isinstance(value, Problem):
            return error_response(value)
        cache.alias(raw_key(request.scope), key, (cache_control, request.scope.get("route")))
        return cached_response(request, value, cache_control)

    @app.get(
        "/v1/feed",
        tags=["feed"],
        summary="Localized feed, newest first",
        response_model=FeedPage,
        responses={
            304: {"description": "Not modified (the `If-None-Match` ETag is current)."},
            **error_responses(400, 422),
        },
    )
    async def feed(
        request: Request,
        locale: LocaleParam = None,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page; absent for the first page.")
        ] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=settings.feed_max_limit,
                description=f"Entries per page (default {settings.feed_default_limit}, "
                f"at most {settings.feed_max_limit}).",
            ),
        ] = None,
        tickers: Annotated[
            str | None,
            Query(
                description="Comma-separated tickers: only stories mentioning any of them. 1-15 letters or "
                f"digits each, at most {MAX_TICKERS}; 400 `invalid_tickers` otherwise. A ticker no story "
                "mentions is not an error: it matches nothing.",
                examples=["BTC,ETH"],
            ),
        ] = None,
        outlet: Annotated[
            str | None,
            Query(
                description="Only stories with a member from this outlet id. An unknown outlet is "
                "400 `unknown_outlet` (not an empty list), so a typo shows.",
                examples=["gate"],
            ),
        ] = None,
        untranslated: Annotated[
            Literal["exclude", "include"],
            Query(
                description="`exclude` (default): only stories with a version in the requested locale or "
                "its fallback chain. `include`: the others too, served in their original's locale and "
                "marked `untranslated: true`."
            ),
        ] = "exclude",
        accept_language: AcceptLanguage = None,
    ) -> Response:
        """Each story once, in the requested locale when a member has it, else through the fallback chain.

        Pages are keyset-paginated and stable: a story never appears on two pages. Responses
        carry `ETag`, `Cache-Control` and `Vary: Accept-Language`.
        """
        return await feed_response(
            request,
            locale=locale,
            accept_language=accept_language,
            cursor=cursor,
            limit=limit or settings.feed_default_limit,
            tickers=tickers,
            outlet=outlet,
            untranslated=untranslated == "include",
        )

    async def feed_response(
        request: Request,
        *,
        locale: str | None,
        accept_language: str | None,
        cursor: str | None,
        limit: int,
        tickers: str | None,
        outlet: str | None,
        untranslated: bool,
    ) -> Response:
        query = feed_query(
            reader.signer,
            locale=locale,
            accept_language=accept_language,
            cursor=cursor,
            limit=limit,
            tickers=tickers,
            outlet=outlet,
            untranslated=untranslated,
        )
        if isinstance(query, Problem):
            return error_response(query)
        return await feed_answer(request, query)

    async def feed_answer(request: Request, query: FeedQuery) -> Response:
        """The page for a validated query: the kept one while current, else built."""
        kept = reader.kept_page(query)
        if kept is not None:
            return cached_response(request, _json(kept), public)

        def build() -> Rendered | Problem:
            page = reader.feed_rows(query)
            return page if isinstance(page, Problem) else _json(page)

        return await _serve(request, ("feed", query), build, public)

    async def hot_feed(request: Request, params: Mapping[str, str]) -> Response | None:
        """``/v1/feed`` without FastAPI's parameter machinery (``api.hotpath``); None for a
        ``limit`` or ``untranslated`` the documented route answers with a 422."""
        accept_language = request.headers.get("accept-language")
        raw = (request.scope["query_string"], accept_language)
        query = known_queries.get(raw)
        if query is not None:  # validated before: a pure function of the raw request
            return await feed_answer(request, query)
        limit = hot_limit(params.get("limit"), settings.feed_default_limit, settings.feed_max_limit)
        untranslated = params.get("untranslated", "exclude")
        if limit is None or untranslated not in ("exclude", "include"):
            return None
        found = feed_query(
            reader.signer,
            locale=params.get("locale"),
            accept_language=accept_language,
            cursor=params.get("cursor"),
            limit=limit,
            tickers=params.get("tickers"),
            outlet=params.get("outlet"),
            untranslated=untranslated == "include",
        )
        if isinstance(found, Problem):
            return error_response(found)
        known_queries[raw] = found
        while len(known_queries) > KNOWN_QUERIES:
            known_queries.pop(next(iter(known_queries)))
        return await feed_answer(request, found)

    known_queries: dict[tuple[bytes, str | None], FeedQuery] = {}
    """Validated ``/v1/feed`` queries by raw query string and Accept-Language (a cursor's MAC and
    the locale's resolution are not worked out again for a repeat); oldest dropped first."""

    @app.get(
        "/v1/stories/{story_id}",
        tags=["feed"],
        summary="One story with all its members",
        response_model=StoryDetail,
        responses={304: {"description": "Not modified."}, **error_responses(400, 404, 422)},
    )
    async def story(
        request: Request,
        story_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="Story id, as in feed entries.")],
        locale: LocaleParam = None,
        accept_language: AcceptLanguage = None,
    ) -> Response:
        """The story in the requested locale (same rules as the feed), every member, related stories."""
        resolved = resolve_locale(locale, accept_language)
        if isinstance(resolved, Problem):
            return error_response(resolved)

        def build() -> Rendered | Problem:
            detail = reader.story(story_id, resolved)
            if detail is None:
                return Problem(404, "not_found", f"story {story_id} not found")
            return Rendered.of_json(detail)

        return await _serve(request, ("story", story_id, resolved), build, public)

    @app.get(
        "/v1/feed/changes",
        tags=["feed"],
        summary="Delta sync: stories changed since a token",
        response_model=ChangesPage,
        responses={304: {"description": "Not modified."}, **error_responses(400, 422)},
    )
    async def changes(
        request: Request,
        since: Annotated[
            str | None,
            Query(description="`next_since` of the previous call. Absent: a token for now, and no changes."),
        ] = None,
        locale: LocaleParam = None,
        untranslated: Annotated[
            Literal["exclude", "include"],
            Query(description="As in `/v1/feed`: which feed's membership `upsert`/`removed` follow."),
        ] = "exclude",
        accept_language: AcceptLanguage = None,
    ) -> Response:
        """Stories that changed after the token, one line each with its current state: `upsert` (fetch
        it again) or `removed` (hidden, deleted, or no longer served in this locale)."""
        resolved = resolve_locale(locale, accept_language)
        if isinstance(resolved, Problem):
            return error_response(resolved)
        after: int | None = None
        if since is not None:
            after = reader.signer.read_since_token(since)
            if after is None:
                return error_response(
                    Problem(400, "invalid_since", "since token is malformed or was tampered with")
                )
        page = await run_in_threadpool(reader.changes, after, resolved, untranslated == "include")
        return cached_response(request, Rendered.of_json(page), "no-cache")

    export_handlers = install_export_routes(app, settings=settings, reader=reader, cache=cache)
    install_greader(
        app,
        settings=settings,
        engine=engine,
        reader=reader,
        secret=lambda: shared_secret(engine, GREADER_SECRET),
    )

    @app.get("/healthz", tags=["ops"], summary="The process is up", response_model=Health)
    async def healthz() -> Health:
        return Health()

    @app.get(
        "/readyz",
        tags=["ops"],
        summary="The database is reachable and migrated to head",
        response_model=Readiness,
        responses=error_responses(503),
    )
    def readyz() -> Response:
        try:
            revision = current_revision(engine)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            return error_response(
                Problem(503, "database_unavailable", f"database unreachable: {type(exc).__name__}")
            )
        if revision != head:
            return error_response(
                Problem(503, "migrations_pending", f"database at revision {revision}, code expects {head}")
            )
        return JSONResponse(Readiness(revision=revision).model_dump(), headers={"Cache-Control": "no-store"})

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Text exposition."}
        },
    )
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    ceiling: list[Rendered] = []

    @app.get("/bench/ceiling", include_in_schema=False)
    async def bench_ceiling(request: Request) -> Response:
        """The fastest this app can answer a typical page, for the bench: the pre-built bytes of the
        first English page (built on the first call), through the same middleware, hot-route
        dispatch (``api.hotpath``), ETag and gzip handling as ``/v1/feed``, but never answered by
        the micro-cache."""
        if not ceiling:
            page = await run_in_threadpool(
                reader.feed_page_bytes, FeedQuery(CEILING_LOCALE, None, settings.feed_default_limit)
            )
            if isinstance(page, Problem):
                return error_response(page)
            ceiling.append(Rendered.of(page))
        return cached_response(request, ceiling[0], public)

    async def hot_ceiling(request: Request, _params: Mapping[str, str]) -> Response:
        return await bench_ceiling(request)

    install_hot_routes(app, {"/v1/feed": hot_feed, "/bench/ceiling": hot_ceiling, **export_handlers})
    return app

"""``/v1/admin`` routes: HTTP in, one ``aggregator.editorial`` call in one transaction, JSON out.

Reads need the reader role, story/disclaimer/review actions the editor role, sources and keys the
admin role. After every write the app's response cache is emptied (``on_change``), so the public
feed and story pages show the edit at once.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from aggregator.db import session_scope
from aggregator.editorial import Actor, disclaimers, review, stories
from aggregator.editorial import audit as audit_log
from aggregator.editorial import keys as api_keys
from aggregator.editorial import sources as feeds
from api.admin.auth import requires
from api.admin.schemas import (
    CatalogueBody,
    DisclaimerBody,
    Done,
    KeyBody,
    MemberUrl,
    MergeBody,
    MoveBody,
    Page,
    PinBody,
    SourceBody,
    SourceUpdate,
    TitleBody,
    VerdictBody,
)
from api.errors import error_responses
from core.errors import EditorialError
from sources.opml import SourceSpec

T = TypeVar("T")
StoryId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Story id.")]
AUTH_ERRORS = error_responses(401, 403, 404, 409, 422)
SourceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Source id.")]
MAX_OPML_BYTES = 2 * 1024 * 1024


def admin_router(engine: sa.Engine, on_change: Callable[[], None]) -> APIRouter:
    reader = Annotated[Actor, Depends(requires(engine, "reader"))]
    editor = Annotated[Actor, Depends(requires(engine, "editor"))]
    admin = Annotated[Actor, Depends(requires(engine, "admin"))]
    router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=AUTH_ERRORS)

    async def write(fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with session_scope(engine) as session:
                return fn(session)

        result = await run_in_threadpool(run)
        on_change()
        return result

    async def read(fn: Callable[[Any], T]) -> T:
        def run() -> T:
            with session_scope(engine) as session:
                return fn(session)

        return await run_in_threadpool(run)

    async def story_done(story_id: int, fn: Callable[[Any], Any]) -> Done:
        def both(session: Any) -> Done:
            result = fn(session)
            sid = result if isinstance(result, int) else story_id
            return Done(story_id=sid, detail=stories.detail(session, sid))

        return await write(both)

    # ---- stories -------------------------------------------------------------------------

    @router.get("/stories", summary="Newest stories with members, merge decisions and related links")
    async def list_stories(
        actor: reader, limit: Annotated[int, Query(ge=1, le=200)] = 30
    ) -> list[dict[str, Any]]:
        return await read(lambda s: [stories.detail(s, i) for i in stories.recent(s, limit=limit)])

    @router.get("/stories/{story_id}", summary="One story as editors see it (hidden ones too)")
    async def get_story(actor: reader, story_id: StoryId) -> dict[str, Any]:
        return await read(lambda s: stories.detail(s, story_id))

    @router.post("/stories/{story_id}/split", summary="The member becomes its own story", response_model=Done)
    async def split(actor: editor, story_id: StoryId, body: MemberUrl) -> Done:
        return await story_done(story_id, lambda s: stories.split(s, actor, story_id, body.url))

    @router.post(
        "/stories/{story_id}/merge",
        summary="Every member of `story_id` joins this story",
        response_model=Done,
    )
    async def merge(actor: editor, story_id: StoryId, body: MergeBody) -> Done:
        return await story_done(story_id, lambda s: stories.merge(s, actor, story_id, body.story_id))

    @router.post("/stories/{story_id}/move", summary="Move one member to another story", response_model=Done)
    async def move(actor: editor, story_id: StoryId, body: MoveBody) -> Done:
        return await story_done(story_id, lambda s: stories.move(s, actor, story_id, body.url, body.story_id))

    @router.post("/stories/{story_id}/original", summary="Mark a member as the original", response_model=Done)
    async def original(actor: editor, story_id: StoryId, body: MemberUrl) -> Done:
        return await story_done(story_id, lambda s: stories.set_original(s, actor, story_id, body.url))

    @router.post("/stories/{story_id}/hide", summary="Hide the story from every feed", response_model=Done)
    async def hide(actor: editor, story_id: StoryId) -> Done:
        return await story_done(story_id, lambda s: stories.set_hidden(s, actor, story_id, True))

    @router.post("/stories/{story_id}/unhide", summary="Show a hidden story again", response_model=Done)
    async def unhide(actor: editor, story_id: StoryId) -> Done:
        return await story_done(story_id, lambda s: stories.set_hidden(s, actor, story_id, False))

    @router.post(
        "/stories/{story_id}/pin",
        summary="Pin to the top of a locale's feed until a time",
        response_model=Done,
    )
    async def pin(actor: editor, story_id: StoryId, body: PinBody) -> Done:
        return await story_done(story_id, lambda s: stories.pin(s, actor, story_id, body.until, body.locale))

    @router.post("/stories/{story_id}/unpin", summary="Remove the pin", response_model=Done)
    async def unpin(actor: editor, story_id: StoryId) -> Done:
        return await story_done(story_id, lambda s: stories.unpin(s, actor, story_id))

    @router.put(
        "/stories/{story_id}/title",
        summary="Set (or, empty, drop) the title in one locale",
        response_model=Done,
    )
    async def title(actor: editor, story_id: StoryId, body: TitleBody) -> Done:
        return await story_done(
            story_id, lambda s: stories.set_title(s, actor, story_id, body.locale, body.title)
        )

    # ---- audit ---------------------------------------------------------------------------

    @router.get("/audit", summary="The audit log, newest first", response_model=Page)
    async def audit(
        actor: reader,
        before: Annotated[int | None, Query(ge=1, description="`next` of the previous page.")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        action: Annotated[
            str | None, Query(max_length=64, description="Only this action, e.g. `story.split`.")
        ] = None,
    ) -> Page:
        def page(s: Any) -> Page:
            rows, nxt = audit_log.entries(s, before_id=before, limit=limit, action=action)
            return Page(
                items=[
                    {
                        "id": r.id,
                        "at": r.at.isoformat(),
                        "actor": r.actor,
                        "action": r.action,
                        "target": r.target,
                        "before": r.before,
                        "after": r.after,
                    }
                    for r in rows
                ],
                next=nxt,
            )

        return await read(page)

    # ---- keys ----------------------------------------------------------------------------

    @router.get("/keys", summary="API keys (never the keys themselves)")
    async def list_keys(actor: admin) -> list[dict[str, Any]]:
        return await read(lambda s: [api_keys.describe(k) for k in api_keys.list_keys(s)])

    @router.post("/keys", summary="Create a key; the response is the only time it is shown", status_code=201)
    async def create_key(actor: admin, body: KeyBody) -> dict[str, Any]:
        def create(s: Any) -> dict[str, Any]:
            row, key = api_keys.create_key(s, actor, body.role, body.name, body.locale)
            return {**api_keys.describe(row), "key": key}

        return await write(create)

    @router.delete("/keys/{key_id}", summary="Revoke a key (at once, in every process)")
    async def revoke_key(actor: admin, key_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
        return await write(lambda s: api_keys.describe(api_keys.revoke_key(s, actor, key_id)))

    # ---- sources -------------------------------------------------------------------------

    @router.get(
        "/sources", summary="Sources with their health (last fetch, status, errors, next check, items/day)"
    )
    async def list_sources(actor: reader) -> list[dict[str, Any]]:
        return await read(feeds.health)

    @router.post("/sources", summary="Add a source", status_code=201)
    async def add_source(actor: admin, body: SourceBody) -> dict[str, Any]:
        spec = SourceSpec(
            url=body.url.strip(), outlet=body.outlet.strip(), locale=body.locale, title=body.title
        )
        return await write(lambda s: feeds.describe(feeds.add(s, actor, spec)))

    @router.patch("/sources/{source_id}", summary="Change a source's url, outlet, locale, title or enabled")
    async def update_source(actor: admin, source_id: SourceId, body: SourceUpdate) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        return await write(lambda s: feeds.describe(feeds.update(s, actor, source_id, changes)))

    @router.post("/sources/{source_id}/enable", summary="Poll this source again")
    async def enable_source(actor: admin, source_id: SourceId) -> dict[str, Any]:
        return await write(lambda s: feeds.describe(feeds.set_enabled(s, actor, source_id, True)))

    @router.post("/sources/{source_id}/disable", summary="Stop polling this source")
    async def disable_source(actor: admin, source_id: SourceId) -> dict[str, Any]:
        return await write(lambda s: feeds.describe(feeds.set_enabled(s, actor, source_id, False)))

    @router.post(
        "/sources/{source_id}/poll", summary="Poll now (due at the next scheduler tick of any worker)"
    )
    async def poll_source(actor: admin, source_id: SourceId) -> dict[str, Any]:
        return await write(lambda s: feeds.describe(feeds.poll_now(s, actor, source_id)))

    @router.post(
        "/sources/opml",
        summary="Import an OPML 2.0 document (the request body), all or nothing",
        openapi_extra={"requestBody": {"content": {"text/x-opml": {"schema": {"type": "string"}}}}},
    )
    async def import_opml(actor: admin, request: Request) -> dict[str, int]:
        data = await request.body()
        if len(data) > MAX_OPML_BYTES:
            raise EditorialError(f"OPML document larger than {MAX_OPML_BYTES} bytes")
        added, present = await write(lambda s: feeds.import_opml(s, actor, data))
        return {"added": added, "already_present": present}

    @router.get(
        "/sources/opml",
        summary="Every source as OPML 2.0",
        response_class=Response,
        responses={200: {"content": {"text/x-opml": {}}, "description": "OPML 2.0."}},
    )
    async def export_opml(actor: reader) -> Response:
        body = await read(feeds.opml)
        return Response(body, media_type="text/x-opml; charset=utf-8")

    @router.post(
        "/sources/catalogue", summary="Subscribe the outlet catalogue's feeds (of one outlet/locale)"
    )
    async def subscribe_catalogue(actor: admin, body: CatalogueBody) -> dict[str, int]:
        added, present = await write(lambda s: feeds.subscribe_catalogue(s, actor, body.outlet, body.locale))
        return {"added": added, "already_present": present}

    # ---- disclaimers ---------------------------------------------------------------------

    @router.get("/disclaimers", summary="Texts in force per policy and locale, and each policy's outlets")
    async def list_disclaimers(actor: reader) -> dict[str, Any]:
        return await read(disclaimers.overview)

    @router.post(
        "/disclaimers", summary="Publish a new version of one policy's text in one locale", status_code=201
    )
    async def publish_disclaimer(actor: editor, body: DisclaimerBody) -> dict[str, Any]:
        def publish(s: Any) -> dict[str, Any]:
            row = disclaimers.publish(s, actor, body.policy, body.locale, body.text)
            return {"policy": row.policy, "locale": row.locale, "version": row.version, "text": row.text}

        return await write(publish)

    # ---- review queue --------------------------------------------------------------------

    @router.get("/review", summary="Dedupe decisions nearest their thresholds, most uncertain first")
    async def review_queue(
        actor: reader, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> list[dict[str, Any]]:
        return await read(lambda s: review.queue(s, limit=limit))

    @router.post(
        "/review/{key:path}",
        summary="Confirm or correct one queue entry (`key`: a member's URL, or `related:A:B`)",
    )
    async def review_decide(actor: editor, key: str, body: VerdictBody) -> dict[str, Any]:
        return await write(lambda s: review.decide(s, actor, key, body.verdict, body.story_id))

    return router

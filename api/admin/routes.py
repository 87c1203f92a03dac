"""``/v1/admin`` routes: HTTP in, one ``aggregator.editorial`` call in one transaction, JSON out.

Reads need the reader role, story/disclaimer/review actions the editor role, sources and keys the
admin role. After every write the app's response cache is emptied (``on_change``), so the public
feed and story pages show the edit at once.
"""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from aggregator.db import session_scope
from aggregator.editorial import Actor, stories
from aggregator.editorial import audit as audit_log
from aggregator.editorial import keys as api_keys
from api.admin.auth import requires
from api.admin.schemas import Done, KeyBody, MemberUrl, MergeBody, MoveBody, Page, PinBody, TitleBody
from api.errors import error_responses

T = TypeVar("T")
StoryId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Story id.")]
AUTH_ERRORS = error_responses(401, 403, 404, 409, 422)


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
            row, key = api_keys.create_key(s, actor, body.role, body.name)
            return {**api_keys.describe(row), "key": key}

        return await write(create)

    @router.delete("/keys/{key_id}", summary="Revoke a key (at once, in every process)")
    async def revoke_key(actor: admin, key_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:
        return await write(lambda s: api_keys.describe(api_keys.revoke_key(s, actor, key_id)))

    return router

"""``/dashboard``: the editors' pages, server-rendered with Jinja2 (autoescaped) and htmx.

Every page is sent with a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no images or frames from elsewhere). Forms post
``application/x-www-form-urlencoded`` with a CSRF token (a hidden field; htmx sends it as a
header too); actions redirect back (303) with a one-line message. The work is done by
``aggregator.editorial``, the same functions the admin API calls.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from aggregator import LOCALES
from aggregator.db import session_scope
from aggregator.editorial import Actor, audit, disclaimers, review, stories
from aggregator.editorial import sources as feeds
from aggregator.editorial.keys import authenticate
from aggregator.models import ApiKey
from api.dashboard.session import COOKIE, LIFETIME_S, LOGIN_COOKIE, LoginLimiter, SessionSigner
from core.errors import BabelwireError, EditorialError
from sources.opml import SourceSpec

HERE = Path(__file__).parent
STATIC = HERE / "static"
HTMX = "htmx-2.0.11.min.js"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 1024 * 1024
RTL = frozenset({"ar"})


def safe_href(url: str | None) -> str | None:
    """A feed's link, only when it is plain http(s): never ``javascript:`` or ``data:``."""
    if not url:
        return None
    scheme = urlsplit(url.strip()).scheme.lower()
    return url.strip() if scheme in ("http", "https") else None


def sparkline(values: list[int], width: int = 112, height: int = 24) -> str:
    """SVG polyline points of a daily series (drawn with attributes: no inline style under the CSP)."""
    if not values:
        return ""
    top = max(values) or 1
    step = width / max(1, len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["href"] = safe_href
    env.filters["sparkline"] = sparkline
    env.globals.update(locales=LOCALES, rtl=RTL, htmx=HTMX)
    return env


def dashboard_router(
    engine: sa.Engine, secret: str | Callable[[], str], on_change: Callable[[], None]
) -> APIRouter:
    env = _environment()
    signer = SessionSigner(secret)
    limiter = LoginLimiter()
    router = APIRouter(prefix="/dashboard", include_in_schema=False)

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def cookie_flags(request: Request) -> dict[str, Any]:
        return {
            "httponly": True,
            "samesite": "lax",
            "secure": request.url.scheme == "https",
            "path": "/dashboard",
        }

    def back(path: str, message: str | None = None, error: str | None = None) -> RedirectResponse:
        query = urlencode({k: v[:300] for k, v in (("msg", message), ("error", error)) if v})
        return RedirectResponse(
            f"/dashboard/{path}" + (f"?{query}" if query else ""), 303, headers=SECURITY_HEADERS
        )

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise EditorialError("form too large")
        parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        fields = {k: v[0] for k, v in parsed.items()}
        if any("\x00" in v for v in fields.values()):
            raise EditorialError("form fields must not contain NUL characters")
        return fields

    async def current(request: Request) -> Any:
        return await run_in_threadpool(signer.open, engine, request.cookies.get(COOKIE))

    def base(request: Request, who: Any, active: str) -> dict[str, Any]:
        return {
            "who": who.actor,
            "csrf": who.csrf,
            "active": active,
            "msg": request.query_params.get("msg"),
            "error": request.query_params.get("error"),
            "may_edit": who.actor.may("editor"),
            "may_admin": who.actor.may("admin"),
        }

    async def view(
        request: Request, active: str, template: str, load: Callable[[Session], dict[str, Any]]
    ) -> Response:
        who = await current(request)
        if who is None:
            return RedirectResponse("/dashboard/login", 303, headers=SECURITY_HEADERS)

        def run() -> dict[str, Any]:
            with session_scope(engine) as s:
                return load(s)

        data = await run_in_threadpool(run)
        return page(template, **base(request, who, active), **data)

    # ---- login ---------------------------------------------------------------------------

    @router.get("", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard/stories", 303, headers=SECURITY_HEADERS)

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or ""
        fresh = len(token) != 32
        if fresh:
            token = secrets.token_urlsafe(24)
        response = page("login.html", csrf=token, error=None)
        if fresh:
            response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **cookie_flags(request))
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        if limiter.blocked(client):
            return page(
                "login.html",
                status=429,
                csrf=request.cookies.get(LOGIN_COOKIE, ""),
                error="Too many attempts; wait a minute.",
            )
        fields = await form(request)
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not token or not hmac.compare_digest(fields.get("csrf", ""), token):
            limiter.failed(client)
            return page("login.html", status=403, csrf=token, error="The form expired; try again.")

        def check() -> Any:
            with Session(engine) as s:
                actor = authenticate(s, fields.get("key", "").strip())
                return None if actor is None else s.get(ApiKey, actor.key_id)

        key = await run_in_threadpool(check)
        if key is None:
            limiter.failed(client)
            return page("login.html", status=401, csrf=token, error="Unknown or revoked key.")
        response = RedirectResponse("/dashboard/stories", 303, headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, signer.issue(key), max_age=LIFETIME_S, **cookie_flags(request))
        response.delete_cookie(LOGIN_COOKIE, path="/dashboard")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        who = await current(request)
        fields = await form(request)
        if who is not None and not _csrf_ok(request, fields, who.csrf):
            return page("error.html", status=403, message="Bad or missing CSRF token.")
        response = RedirectResponse("/dashboard/login", 303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/dashboard")
        return response

    # ---- pages ---------------------------------------------------------------------------

    def stream(s: Session) -> dict[str, Any]:
        return {"stories": [stories.detail(s, i) for i in stories.recent(s, limit=30)]}

    @router.get("/stories", response_class=HTMLResponse)
    async def stories_page(request: Request) -> Response:
        return await view(request, "stories", "stories.html", stream)

    @router.get("/stories/stream", response_class=HTMLResponse)
    async def stories_stream(request: Request) -> Response:
        return await view(request, "stories", "_stream.html", stream)

    @router.get("/review", response_class=HTMLResponse)
    async def review_page(request: Request) -> Response:
        return await view(request, "review", "review.html", lambda s: {"queue": review.queue(s, limit=50)})

    @router.get("/sources", response_class=HTMLResponse)
    async def sources_page(request: Request) -> Response:
        return await view(request, "sources", "sources.html", lambda s: {"sources": feeds.health(s)})

    @router.get("/disclaimers", response_class=HTMLResponse)
    async def disclaimers_page(request: Request) -> Response:
        return await view(request, "disclaimers", "disclaimers.html", lambda s: disclaimers.overview(s))

    @router.get("/audit", response_class=HTMLResponse)
    async def audit_page(request: Request) -> Response:
        raw = request.query_params.get("before", "")
        before = int(raw) if raw.isdigit() and len(raw) < 10 else None

        def load(s: Session) -> dict[str, Any]:
            rows, nxt = audit.entries(s, before_id=before, limit=50)
            return {"entries": rows, "next": nxt}

        return await view(request, "audit", "audit.html", load)

    # ---- actions -------------------------------------------------------------------------

    @router.post("/actions/{name}")
    async def act(request: Request, name: str) -> Response:
        who = await current(request)
        if who is None:
            return RedirectResponse("/dashboard/login", 303, headers=SECURITY_HEADERS)
        fields = await form(request)
        if not _csrf_ok(request, fields, who.csrf):
            return page("error.html", status=403, message="Bad or missing CSRF token.")
        found = ACTIONS.get(name)
        if found is None:
            return page("error.html", status=404, message="No such action.")
        role, where = found
        if not who.actor.may(role):
            return page("error.html", status=403, message=f"This needs the {role} role.")

        def work() -> str:
            with session_scope(engine) as s:
                return perform(s, who.actor, name, fields)

        try:
            message = await run_in_threadpool(work)
        except BabelwireError as exc:
            return back(where, error=str(exc))
        on_change()
        return back(where, message=message)

    @router.get("/sources.opml")
    async def sources_opml(request: Request) -> Response:
        who = await current(request)
        if who is None:
            return RedirectResponse("/dashboard/login", 303, headers=SECURITY_HEADERS)

        def run() -> bytes:
            with session_scope(engine) as s:
                return feeds.opml(s)

        body = await run_in_threadpool(run)
        return Response(
            body,
            media_type="text/x-opml; charset=utf-8",
            headers={"Cache-Control": "no-store", "Content-Disposition": "attachment; filename=sources.opml"},
        )

    return router


ACTIONS: dict[str, tuple[str, str]] = {
    **{
        name: ("editor", "stories")
        for name in ("split", "merge", "move", "original", "hide", "unhide", "pin", "unpin", "title")
    },
    "review": ("editor", "review"),
    "disclaimer": ("editor", "disclaimers"),
    **{
        name: ("admin", "sources")
        for name in ("source-add", "source-enable", "source-disable", "source-poll", "catalogue")
    },
}
"""Dashboard action → (role it needs, page it returns to)."""


def perform(s: Session, a: Actor, name: str, f: dict[str, str]) -> str:
    """Do one dashboard action from its form fields; the one-line message to show."""
    if name == "split":
        return f"Split into story {stories.split(s, a, _int(f, 'story'), f.get('url', ''))}."
    if name == "merge":
        return f"Merged into story {stories.merge(s, a, _int(f, 'story'), _int(f, 'other'))}."
    if name == "move":
        return f"Moved to story {stories.move(s, a, _int(f, 'story'), f.get('url', ''), _int(f, 'to'))}."
    if name == "original":
        stories.set_original(s, a, _int(f, "story"), f.get("url", ""))
        return "Original set."
    if name in ("hide", "unhide"):
        stories.set_hidden(s, a, _int(f, "story"), name == "hide")
        return "Hidden." if name == "hide" else "Shown again."
    if name == "pin":
        stories.pin(s, a, _int(f, "story"), _until(f), f.get("locale") or None)
        return "Pinned."
    if name == "unpin":
        stories.unpin(s, a, _int(f, "story"))
        return "Unpinned."
    if name == "title":
        stories.set_title(s, a, _int(f, "story"), f.get("locale", ""), f.get("title", ""))
        return "Title saved."
    if name == "review":
        to = _int(f, "to") if f.get("to", "").strip() else None
        review.decide(s, a, f.get("key", ""), f.get("verdict", ""), to)
        return "Review saved."
    if name == "disclaimer":
        row = disclaimers.publish(s, a, f.get("policy", ""), f.get("locale", ""), f.get("text", ""))
        return f"Published {row.policy} {row.locale} version {row.version}."
    if name == "source-add":
        spec = SourceSpec(
            url=f.get("url", "").strip(),
            outlet=f.get("outlet", "").strip(),
            locale=f.get("locale", ""),
            title=None,
        )
        return f"Added source {feeds.add(s, a, spec).id}."
    if name in ("source-enable", "source-disable"):
        feeds.set_enabled(s, a, _int(f, "source"), name == "source-enable")
        return "Enabled." if name == "source-enable" else "Disabled."
    if name == "source-poll":
        feeds.poll_now(s, a, _int(f, "source"))
        return "Due now: the next scheduler tick polls it."
    if name == "catalogue":
        added, present = feeds.subscribe_catalogue(s, a, f.get("outlet") or None, f.get("locale") or None)
        return f"Subscribed {added} catalogue feeds ({present} already present)."
    raise EditorialError(f"no action {name!r}")


def _csrf_ok(request: Request, fields: dict[str, str], expected: str) -> bool:
    given = request.headers.get("x-csrf-token") or fields.get("csrf", "")
    return bool(given) and hmac.compare_digest(given, expected)


def _int(fields: dict[str, str], name: str) -> int:
    raw = fields.get(name, "").strip()
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise EditorialError(f"{name}: a positive number is required")
    return int(raw)


def _until(fields: dict[str, str]) -> datetime | None:
    raw = fields.get("until", "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise EditorialError("until: a date and time like 2026-12-08T09:00") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

"""The hottest GET routes answered ahead of FastAPI's routing and parameter machinery.

For a request to ``/v1/feed`` FastAPI's dependency solving and per-parameter validation cost more
than reading and joining a page of ready entries. ``HotRoutes`` sits where the router starts
(inside the app's middleware and exception handlers, so errors are the same JSON and metrics see
every request), reads the query string the way Starlette does (latin-1, ``parse_qsl``, blank
values kept, the last value of a repeated name wins) and calls a handler with it. The handlers
call the same validation (``api.params``) and response code as the documented FastAPI routes. A
handler returns None for anything it does not take as it is (for ``/v1/feed``: a ``limit`` or
``untranslated`` FastAPI would refuse with a 422): the request then goes on to the FastAPI route,
which owns those errors and the OpenAPI schema. ``scope["route"]`` is set to the documented route,
so metrics count hot requests under the same template.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

HotHandler = Callable[[Request, Mapping[str, str]], Awaitable[Response | None]]


PARSED_KEPT = 4096
_parsed: dict[bytes, Mapping[str, str]] = {}


def query_params(scope: Scope) -> Mapping[str, str]:
    """The query parameters as a FastAPI route sees a ``str`` parameter (read-only: the parse of a
    query string seen before is answered again; oldest dropped first)."""
    raw: bytes = scope["query_string"]
    found = _parsed.get(raw)
    if found is None:
        found = _parsed[raw] = MappingProxyType(
            dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        )
        while len(_parsed) > PARSED_KEPT:
            _parsed.pop(next(iter(_parsed)), None)
    return found


class HotRoutes:
    """Answers GETs of ``routes`` (path → handler, documented route) before routing."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, tuple[HotHandler, APIRoute]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            hot = self.routes.get(get_route_path(scope))
            if hot is not None:
                handler, route = hot
                scope["route"] = route
                response = await handler(Request(scope, receive), query_params(scope))
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def install_hot_routes(app: FastAPI, handlers: Mapping[str, HotHandler]) -> None:
    """Put ``handlers`` (path → handler) in front of the router; each path must have a GET route."""
    documented = {
        r.path: r for r in app.router.routes if isinstance(r, APIRoute) and "GET" in (r.methods or ())
    }
    app.router.middleware_stack = HotRoutes(
        app.router.middleware_stack, {path: (handler, documented[path]) for path, handler in handlers.items()}
    )

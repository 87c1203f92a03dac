"""Every error the API sends is JSON ``{"error": {"code", "message"}}``, never a traceback.

Expected client errors are returned as a typed ``Problem`` by the read layer and turned into a
response here; FastAPI's own HTTP and validation errors and anything unexpected are caught by
the handlers ``install_error_handlers`` registers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import ErrorBody
from core.errors import CatalogueError, EditorialError

log = logging.getLogger("babelwire.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclass(frozen=True)
class Problem:
    """An expected failure of a request (bad cursor, unknown locale…), sent as an error response."""

    status: int
    code: str
    message: str


RETRY_AFTER_S = 5
"""The ``Retry-After`` of every 503: a database restart takes seconds."""
DATABASE_UNAVAILABLE = Problem(503, "database_unavailable", "the database is unavailable; retry later")


def database_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot answer now — refused or lost connection, a statement
    past its timeout, a server shutting down or starting up, no pooled connection free in time —
    rather than a bug in a statement."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


def problem_headers(problem: Problem) -> dict[str, str]:
    """Headers every error response carries: never cached; a 503 says when to come back."""
    headers = {"Cache-Control": "no-store"}
    if problem.status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_S)
    return headers


def error_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": problem.code, "message": problem.message}}
    all_headers = {**problem_headers(problem), **(headers or {})}
    return JSONResponse(body, status_code=problem.status, headers=all_headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error shape for these statuses."""
    described = {
        400: "Bad parameter: unknown locale, tampered cursor or token, bad ticker syntax, unknown outlet.",
        401: "No API key, or an unknown or revoked one (`Authorization: Bearer <key>`).",
        403: "The API key's role may not do this.",
        404: "No such story (or it is hidden).",
        409: "The action contradicts the current state.",
        422: "A parameter has the wrong type or is out of range (e.g. `limit` above the maximum).",
        503: "Not ready: the database is unreachable or its migrations are not at head.",
    }
    return {
        s: {"model": ErrorBody, "description": described.get(s, _CODES.get(s, "error"))} for s in statuses
    }


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "header", "body"))
        msg = str(err.get("msg", "invalid"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(jsonable_encoder(exc.detail))
        return error_response(Problem(exc.status_code, code, message), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(Problem(422, "invalid_parameter", _validation_message(exc)))

    @app.exception_handler(EditorialError)
    async def _editorial(request: Request, exc: EditorialError) -> JSONResponse:
        return error_response(Problem(exc.status, exc.code, str(exc)))

    @app.exception_handler(CatalogueError)
    async def _catalogue(request: Request, exc: CatalogueError) -> JSONResponse:
        return error_response(Problem(400, "bad_request", str(exc)))

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        if not database_down(exc):
            log.exception("database error on %s %s", request.method, request.url.path)
            return error_response(Problem(500, "internal_error", "internal server error"))
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, _one_line(exc))
        return error_response(DATABASE_UNAVAILABLE)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(Problem(500, "internal_error", "internal server error"))


def _one_line(exc: BaseException) -> str:
    """The driver's first line of the error, without SQLAlchemy's statement and link trailer."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}"[:300]

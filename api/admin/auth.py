"""Bearer API keys on ``/v1/admin``: no key or a bad one → 401, a key whose role is too low → 403.

The key is looked up in the database on every request, so a revoked key stops working at once in
every process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from aggregator.editorial import Actor
from aggregator.editorial.keys import authenticate

bearer = HTTPBearer(auto_error=False, description="An API key from `main.py keys create`.")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def actor_for_key(engine: sa.Engine, key: str) -> Actor | None:
    with Session(engine) as session:
        return authenticate(session, key)


def requires(engine: sa.Engine, role: str) -> Callable[..., Actor]:
    """A dependency that yields the request's ``Actor`` when its key has at least ``role``."""

    def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Actor:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", headers=CHALLENGE)
        actor = actor_for_key(engine, credentials.credentials)
        if actor is None:
            raise HTTPException(401, "unknown or revoked API key", headers=CHALLENGE)
        if not actor.may(role):
            raise HTTPException(403, f"this needs the {role} role; the key has {actor.role}")
        return actor

    return dependency

"""API keys: ``bw_`` + 32 random bytes (urlsafe base64), shown once; only their sha256 is stored.

A key is looked up in the database on every request (one indexed read), so revoking it takes
effect at once in every process.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, select

from aggregator.editorial import ROLES, Actor
from aggregator.editorial.audit import record
from aggregator.models import ApiKey, utcnow
from core.errors import ConflictError, EditorialError, NotFoundError
from core.locales import REGISTRY

PREFIX = "bw_"
MAX_KEY_CHARS = 200


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(
    session: Session, actor: Actor, role: str, name: str | None = None, locale: str = "en"
) -> tuple[ApiKey, str]:
    """A new key of ``role`` whose reader locale (the Google Reader API's) is ``locale``; returns
    its row and the key itself (never stored)."""
    if role not in ROLES:
        raise EditorialError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    code = REGISTRY.parse(locale)
    if code is None:
        raise EditorialError(f"unknown locale {locale[:20]!r} (one of {' '.join(REGISTRY.codes)})")
    name = (name or "").strip() or f"{role}-key"
    if len(name) > 100:
        raise EditorialError("key name must be at most 100 characters")
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, role=role, key_hash=key_hash(key), prefix=key[:10], locale=code)
    session.add(row)
    session.flush()
    record(session, actor, "key.create", f"key:{row.id}", None, describe(row))
    return row, key


def describe(row: ApiKey) -> dict[str, object]:
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "prefix": row.prefix,
        "locale": row.locale,
        "created_at": row.created_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke_key(session: Session, actor: Actor, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError(f"no API key {key_id}")
    if row.revoked_at is not None:
        raise ConflictError(f"API key {key_id} is already revoked")
    before = describe(row)
    row.revoked_at = utcnow()
    session.add(row)
    session.flush()
    record(session, actor, "key.revoke", f"key:{key_id}", before, describe(row))
    return row


def authenticate(session: Session, key: str) -> Actor | None:
    """The actor of a live key, or None (unknown, revoked or malformed)."""
    if not key.startswith(PREFIX) or len(key) > MAX_KEY_CHARS:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == key_hash(key))).first()
    if row is None or row.revoked_at is not None or row.role not in ROLES:
        return None
    return Actor(row.name, row.role, row.id)

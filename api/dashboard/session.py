"""Dashboard sessions: a signed cookie naming an API key, checked against the database on every
request (a revoked key logs its sessions out at once), with a CSRF token inside.

The cookie's MAC key is derived from ``settings.cursor_secret`` *and* the key's stored hash, so a
session cannot be forged without the database, even with the development secret. Login attempts
are limited per client address (``LoginLimiter``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from aggregator.editorial import ROLES, Actor
from aggregator.models import ApiKey

COOKIE = "bw_session"
LOGIN_COOKIE = "bw_login"
LIFETIME_S = 12 * 3600


@dataclass(frozen=True)
class DashboardSession:
    actor: Actor
    csrf: str


class SessionSigner:
    def __init__(self, secret: str | Callable[[], str]) -> None:
        """``secret``: the cursor secret, or a function giving the one every process shares through
        the database when it is unset (asked on first use)."""
        self._given = secret
        self._key: bytes | None = None if callable(secret) else self._derive(secret)

    @staticmethod
    def _derive(secret: str) -> bytes:
        return hashlib.sha256(b"babelwire-dashboard-session:" + secret.encode()).digest()

    def _mac(self, key_hash: str, payload: bytes) -> str:
        if self._key is None:
            assert callable(self._given)
            self._key = self._derive(self._given())
        key = hmac.new(self._key, key_hash.encode(), hashlib.sha256).digest()
        return hmac.new(key, payload, hashlib.sha256).hexdigest()

    def issue(self, key: ApiKey, now: float | None = None) -> str:
        payload = json.dumps(
            {"k": key.id, "c": secrets.token_urlsafe(24), "e": int((now or time.time()) + LIFETIME_S)},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._mac(key.key_hash, payload)

    def open(
        self, engine: sa.Engine, cookie: str | None, now: float | None = None
    ) -> DashboardSession | None:
        if not cookie or len(cookie) > 512 or "." not in cookie:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            data = json.loads(payload)
            key_id, csrf, expires = int(data["k"]), str(data["c"]), int(data["e"])
        except (binascii.Error, ValueError, KeyError, TypeError):
            return None
        if expires < (now or time.time()):
            return None
        with Session(engine) as session:
            key = session.get(ApiKey, key_id)
        if key is None or key.revoked_at is not None or key.role not in ROLES:
            return None
        if not hmac.compare_digest(mac, self._mac(key.key_hash, payload)):
            return None
        return DashboardSession(Actor(key.name, key.role, key.id), csrf)


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window_s`` per client address (counted in this
    process; a blocked client is answered 429 before its key is even looked at)."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        return times

    def blocked(self, client: str, now: float | None = None) -> bool:
        return len(self._recent(client, time.monotonic() if now is None else now)) >= self.attempts

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._recent(client, now).append(now)

"""Who is asking: ClientLogin with an API key, the ``GoogleLogin auth=`` token, the write token ``T``.

* ClientLogin: ``Email`` is the key's name, ``Passwd`` the key itself; answers ``Auth=<key id>/<hex>``
  (no ``=`` or whitespace inside: NetNewsWire splits lines on ``=``).
* Tokens are HMACs of the key's id and stored hash under a secret kept in the database
  (``appstate``), so every replica and every restart accepts them, and revoking the key (or a new
  secret) ends them. A checked token is kept per process until an editor's action is told
  (``api.feed.FeedReader.sync_pages``: on SQLite read at the start of every request, on PostgreSQL
  NOTIFY-ed at commit): revoking a key is one, so a revoked key is refused on the next request (on
  PostgreSQL, in another process, once the notification arrives: milliseconds).
* Writes: the ``Authorization`` header alone suffices (Fluent Reader sends no ``T``, Reeder ``T=x``);
  without it, ``T`` (trimmed: Read You and newsboat send the token body back as is) must be the
  key's write token from ``/token``.
* Failed logins are rate-limited per client address (:class:`LoginLimiter`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.editorial import ROLES
from aggregator.editorial.keys import MAX_KEY_CHARS, key_hash
from api.caching import PageCache, Span

KEYS = SQLModel.metadata.tables["apikey"]
KEPT_TOKENS = 4096
"""Checked tokens kept per process (:class:`Tokens`)."""
KEYS_SPAN: Span = ("gr:keys", None, None)
"""What a kept token is kept by: no change names it, so only an editor's action (every page) drops it."""
_TOKEN = re.compile(r"([0-9]{1,12})/([0-9a-f]{40})")
_BY_ID = sa.select(KEYS.c.name, KEYS.c.key_hash, KEYS.c.locale, KEYS.c.role, KEYS.c.revoked_at).where(
    KEYS.c.id == sa.bindparam("id")
)
_BY_HASH = sa.select(
    KEYS.c.id, KEYS.c.name, KEYS.c.key_hash, KEYS.c.locale, KEYS.c.role, KEYS.c.revoked_at
).where(KEYS.c.key_hash == sa.bindparam("hash"))


@dataclass(frozen=True)
class Reader:
    """An authenticated key: its id, name and locale."""

    key_id: int
    name: str
    locale: str
    key_hash: str


class Tokens:
    """Issues and checks the ``auth`` and write tokens; ``secret`` is read once, on first use."""

    def __init__(
        self,
        engine: sa.Engine,
        secret: Callable[[], str],
        changes: PageCache[Any] | None = None,
        sync: Callable[[], int | None] = lambda: None,
    ) -> None:
        """``changes``: the cache the committed changes are applied to (``FeedReader.pages``), and
        ``sync`` what applies them (``FeedReader.sync_pages``; None: the database cannot say, and
        nothing kept is trusted). Without them every token is checked in the database."""
        self.engine = engine
        self._secret = secret
        self._key: bytes | None = None
        self._sync = sync
        self._checked: PageCache[Reader] = PageCache(KEPT_TOKENS if changes is not None else 0)
        if changes is not None:
            self._checked.follow(changes)

    def _mac(self, purpose: str, key_id: int, hashed: str) -> str:
        if self._key is None:
            self._key = self._secret().encode()
        return hmac.new(self._key, f"{purpose}:{key_id}:{hashed}".encode(), hashlib.sha1).hexdigest()

    def auth_token(self, reader: Reader) -> str:
        return f"{reader.key_id}/{self._mac('auth', reader.key_id, reader.key_hash)}"

    def write_token(self, reader: Reader) -> str:
        return f"{reader.key_id}/{self._mac('write', reader.key_id, reader.key_hash)}"

    def login(self, name: str, key: str) -> Reader | None:
        """The live key named ``name`` whose key is ``key``, or None."""
        key = key.strip()
        if not key or len(key) > MAX_KEY_CHARS:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(_BY_HASH, {"hash": key_hash(key)}).first()
        if row is None or row.revoked_at is not None or row.role not in ROLES or row.name != name.strip():
            return None
        return Reader(row.id, row.name, row.locale, row.key_hash)

    def _check(self, token: str, purpose: str) -> Reader | None:
        # the mark before the key is read: a revocation told in between keeps the answer out
        mark = None if self._sync() is None else self._checked.mark()
        if mark is not None:
            kept = self._checked.get((purpose, token))
            if kept is not None:
                return kept
        reader = self._check_now(token, purpose)
        if reader is not None:
            self._checked.put((purpose, token), mark, reader, page_span=KEYS_SPAN)
        return reader

    def kept(self, authorization: str | None) -> Reader | None:
        """The reader of a header whose token is kept, without reading anything: the caller has just
        brought the kept tokens up to the committed changes (``sync``); None when not kept."""
        token = _header_token(authorization)
        return None if token is None else self._checked.get(("auth", token))

    def _check_now(self, token: str, purpose: str) -> Reader | None:
        found = _TOKEN.fullmatch(token.strip())
        if found is None:
            return None
        key_id = int(found.group(1))
        with self.engine.connect() as conn:
            row = conn.execute(_BY_ID, {"id": key_id}).first()
        if row is None or row.revoked_at is not None or row.role not in ROLES:
            return None
        if not hmac.compare_digest(found.group(2), self._mac(purpose, key_id, row.key_hash)):
            return None
        return Reader(key_id, row.name, row.locale, row.key_hash)

    def from_header(self, authorization: str | None) -> Reader | None:
        """The reader of ``Authorization: GoogleLogin auth=<token>``, or None."""
        token = _header_token(authorization)
        return None if token is None else self._check(token, "auth")

    def from_write_token(self, token: str | None) -> Reader | None:
        return self._check(token, "write") if token else None


def _header_token(authorization: str | None) -> str | None:
    """The token of ``Authorization: GoogleLogin auth=<token>``, or None."""
    if not authorization:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() != "googlelogin" or rest[:5].lower() != "auth=":
        return None
    return rest[5:]


class LoginLimiter:
    """At most ``failures`` failed logins per client address within ``window_s`` seconds; past that
    every attempt from the address (a right key too) is refused until the oldest failure ages out.
    Per process: each replica counts its own (keys are 256-bit random, so this only slows down
    guessing and keeps logs quiet)."""

    def __init__(self, failures: int = 10, window_s: float = 300.0) -> None:
        self.failures = failures
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(address, deque())
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        return seen

    def retry_after(self, address: str) -> int | None:
        """Seconds to wait when ``address`` is blocked now, else None."""
        now = time.monotonic()
        with self._lock:
            seen = self._recent(address, now)
            if len(seen) < self.failures:
                return None
            return max(1, int(self.window_s - (now - seen[0])) + 1)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._seen) > 10_000:
                for stale in [a for a, s in self._seen.items() if not s or now - s[-1] > self.window_s]:
                    del self._seen[stale]

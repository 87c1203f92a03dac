"""Opaque, tamper-evident tokens: the feed's keyset cursor and the delta-sync ``since`` token.

A token is base64url(payload ‖ HMAC-SHA256(secret, kind ‖ payload)[:12]). The payload is a few
fixed-width integers, so a token is short, carries no server state, and any edit (or a token of
the other kind) fails verification. Decoding returns None instead of raising: a bad token is an
expected client error (400), not a failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MAC_BYTES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = struct.Struct(">qq")
_SINCE = struct.Struct(">q")


@dataclass(frozen=True)
class FeedPosition:
    """The last story of a page: the next page starts strictly after it (newest first)."""

    published_at: datetime
    story_id: int


class TokenSigner:
    """Signs and verifies the API's tokens with ``settings.cursor_secret``, or the secret every
    process shares through the database when that is unset (``secret`` is then a function that
    reads it, called on first use, so an app can be built before its database is reachable)."""

    def __init__(self, secret: str | Callable[[], str]) -> None:
        self._secret = secret
        self._key: bytes | None = None if callable(secret) else self._derive(secret)
        self._lock = threading.Lock()

    @staticmethod
    def _derive(secret: str) -> bytes:
        return hashlib.sha256(b"babelwire-api-token:" + secret.encode()).digest()

    def _mac(self, kind: bytes, payload: bytes) -> bytes:
        key = self._key
        if key is None:
            with self._lock:
                if self._key is None:
                    assert callable(self._secret)
                    self._key = self._derive(self._secret())
                key = self._key
        return hmac.new(key, kind + payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def _seal(self, kind: bytes, payload: bytes) -> str:
        return base64.urlsafe_b64encode(payload + self._mac(kind, payload)).rstrip(b"=").decode()

    def _open(self, kind: bytes, token: str, size: int) -> bytes | None:
        if len(token) > 64:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != size + _MAC_BYTES:
            return None
        payload, mac = raw[:size], raw[size:]
        return payload if hmac.compare_digest(mac, self._mac(kind, payload)) else None

    def feed_cursor(self, position: FeedPosition) -> str:
        micros = (position.published_at - _EPOCH) // timedelta(microseconds=1)
        return self._seal(b"feed", _CURSOR.pack(micros, position.story_id))

    def read_feed_cursor(self, token: str) -> FeedPosition | None:
        payload = self._open(b"feed", token, _CURSOR.size)
        if payload is None:
            return None
        micros, story_id = _CURSOR.unpack(payload)
        try:
            published_at = _EPOCH + timedelta(microseconds=micros)
        except OverflowError:
            return None
        return FeedPosition(published_at, story_id)

    def since_token(self, change_id: int) -> str:
        return self._seal(b"since", _SINCE.pack(change_id))

    def read_since_token(self, token: str) -> int | None:
        payload = self._open(b"since", token, _SINCE.size)
        return None if payload is None else int(_SINCE.unpack(payload)[0])

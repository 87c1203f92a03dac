"""Validation of the feed's query parameters, shared by ``/v1/feed`` and its re-exports."""

from __future__ import annotations

import re

from api.cursor import TokenSigner
from api.errors import Problem
from api.feed import FeedQuery
from api.locales import negotiate, parse_locale, valid_locales_message

TICKER = re.compile(r"^[A-Z0-9]{1,15}$")
PLAIN_LIMIT = re.compile(r"[1-9][0-9]{0,6}")
MAX_TICKERS = 20


def resolve_locale(locale: str | None, accept_language: str | None) -> str | Problem:
    if locale is None:
        return negotiate(accept_language)
    parsed = parse_locale(locale)
    if parsed is None:
        return Problem(400, "unknown_locale", f"unknown locale {locale[:40]!r}; {valid_locales_message()}")
    return parsed


def parse_tickers(raw: str | None) -> tuple[str, ...] | Problem:
    """``BTC,eth`` → ("BTC", "ETH"); empty segments are ignored."""
    if raw is None:
        return ()
    tickers = sorted({t.strip().upper() for t in raw.split(",") if t.strip()})
    if len(tickers) > MAX_TICKERS:
        return Problem(400, "invalid_tickers", f"at most {MAX_TICKERS} tickers")
    bad = [t for t in tickers if not TICKER.match(t)]
    if bad:
        return Problem(400, "invalid_tickers", f"invalid ticker {bad[0][:20]!r}: use 1-15 letters or digits")
    return tuple(tickers)


def feed_query(
    signer: TokenSigner,
    *,
    locale: str | None,
    accept_language: str | None,
    cursor: str | None,
    limit: int,
    tickers: str | None,
    outlet: str | None,
    untranslated: bool = False,
) -> FeedQuery | Problem:
    """The ``FeedQuery`` these parameters ask for, or the first thing wrong with them (400)."""
    resolved = resolve_locale(locale, accept_language)
    if isinstance(resolved, Problem):
        return resolved
    after = None
    if cursor is not None:
        after = signer.read_feed_cursor(cursor)
        if after is None:
            return Problem(400, "invalid_cursor", "cursor is malformed or was tampered with")
    wanted = parse_tickers(tickers)
    if isinstance(wanted, Problem):
        return wanted
    return FeedQuery(resolved, after, limit, wanted, outlet, untranslated)


def hot_limit(raw: str | None, default: int, maximum: int) -> int | None:
    """``limit`` as ``/v1/feed``'s fast path takes it: absent → ``default``; plain digits within
    1..``maximum`` → the number; anything else → None (the FastAPI route answers: its 422)."""
    if raw is None:
        return default
    if PLAIN_LIMIT.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if value <= maximum else None


def export_limit(raw: str | None, default: int, maximum: int) -> int | Problem:
    """``limit`` of the re-exports (a 400 in the feed's format, never a 422)."""
    if raw is None:
        return default
    size = int(raw) if raw.strip().isdigit() and len(raw) < 8 else 0
    if not 1 <= size <= maximum:
        return Problem(400, "invalid_parameter", f"limit must be 1-{maximum}, got {raw[:20]!r}")
    return size


def export_untranslated(raw: str | None) -> bool | Problem:
    if raw not in (None, "exclude", "include"):
        return Problem(400, "invalid_parameter", f"untranslated must be exclude or include, got {raw[:20]!r}")
    return raw == "include"

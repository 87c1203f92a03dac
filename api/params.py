"""Validation of the feed's query parameters, shared by ``/v1/feed`` and its re-exports."""

from __future__ import annotations

import re

from api.cursor import TokenSigner
from api.errors import Problem
from api.feed import FeedQuery
from api.locales import negotiate, parse_locale, valid_locales_message

TICKER = re.compile(r"^[A-Z0-9]{1,15}$")
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

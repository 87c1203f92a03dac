"""The API's names for the reader's locale rules, which live in ``core.fallbacks`` (the writers of
the precomputed feed entries apply the same table)."""

from core.fallbacks import (
    FALLBACKS,
    Chain,
    Choice,
    ScriptConverter,
    Step,
    best_by_locale,
    chain_for,
    choose,
    format_fallbacks,
    in_chain,
    member_locale,
    negotiate,
    parse_fallbacks,
    parse_locale,
    reader_locales,
    valid_locales_message,
)

__all__ = [
    "FALLBACKS",
    "Chain",
    "Choice",
    "ScriptConverter",
    "Step",
    "best_by_locale",
    "chain_for",
    "choose",
    "format_fallbacks",
    "in_chain",
    "member_locale",
    "negotiate",
    "parse_fallbacks",
    "parse_locale",
    "reader_locales",
    "valid_locales_message",
]

"""Normalize stage: a parsed entry → a :class:`NormalizedEntry` (see ``entry``), one module a job.

- ``urls``: the project's one URL normalizer (canonical spelling; dedupe's identity key);
- ``markup``: the nh3 sanitizer and the one HTML-to-text;
- ``attribution``: the "original" link and outbound links of a body;
- ``tickers``: cashtags and known tickers (lists in ``tickers.txt``, ``not_cashtags.txt``);
- ``language``: offline language detection over the locale registry;
- ``entry``: the fixed order that runs them, and ``prepare_feed`` for worker processes.
"""

from aggregator.normalize.entry import NormalizedEntry, normalize_entry, prepare_feed
from aggregator.normalize.language import detect_language
from aggregator.normalize.markup import ALLOWED_TAGS, html_to_text, sanitize_html
from aggregator.normalize.tickers import KNOWN_TICKERS, extract_tickers
from aggregator.normalize.urls import canonical_url, identity_url

__all__ = [
    "ALLOWED_TAGS",
    "KNOWN_TICKERS",
    "NormalizedEntry",
    "canonical_url",
    "detect_language",
    "extract_tickers",
    "html_to_text",
    "identity_url",
    "normalize_entry",
    "prepare_feed",
    "sanitize_html",
]

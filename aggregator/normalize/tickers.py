"""Tickers in a text: cashtags and known tickers written bare (lists: ``tickers.txt``,
``not_cashtags.txt`` beside this module)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path


def _word_list(name: str) -> frozenset[str]:
    text = Path(__file__).with_name(name).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


KNOWN_TICKERS = _word_list("tickers.txt")
_NOT_CASHTAGS = _word_list("not_cashtags.txt")
# A known ticker written bare is a whole run of Latin letters and digits: one cheap tokenizing
# pass and a set lookup find the same tickers as a pattern of every ticker between boundaries.
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_CASHTAG = re.compile(r"(?<![A-Za-z0-9$])\$([A-Za-z]{2,10})(?![A-Za-z0-9])")


def extract_tickers(text: str) -> tuple[str, ...]:
    """Sorted tickers in ``text``: cashtags ($btc → BTC) and known tickers written bare.

    Fullwidth forms (ＢＴＣ) are folded first; a known ticker counts wherever it is not glued to
    other Latin letters or digits, so "比特币BTC跌破" yields BTC where ``\\b`` would not.
    """
    if not text:
        return ()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    found = set(_ALNUM_RUN.findall(text)) & KNOWN_TICKERS
    if "$" in text:
        for tag in _CASHTAG.findall(text):
            upper = tag.upper()
            if upper not in _NOT_CASHTAGS:
                found.add(upper)
    return tuple(sorted(found))

"""Item and stream ids as Google Reader clients write them.

An item is a story: its short id is the story id in decimal, its long form
``tag:google.com,2005:reader/item/`` + 16 hex digits. Clients send back any of: the long form
(padded or not), bare 16 hex digits (Reeder), decimal (Read You, Liferea), signed 64-bit decimal
(Fluent Reader). Streams: ``feed/<n>`` (an outlet), ``user/-/label/<ticker>``,
``user/<anything>/state/com.google/<state>``; none means the reading list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ITEM_PREFIX = "tag:google.com,2005:reader/item/"
STATE_PREFIX = "user/-/state/com.google/"
READING_LIST = STATE_PREFIX + "reading-list"
READ = STATE_PREFIX + "read"
STARRED = STATE_PREFIX + "starred"
KEPT_UNREAD = STATE_PREFIX + "kept-unread"
FRESH = STATE_PREFIX + "fresh"
LABEL_PREFIX = "user/-/label/"
MAX_ID = 2**63 - 1

_HEX = re.compile(r"[0-9a-fA-F]{1,16}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_STREAM = re.compile(r"user/[^/]*/(state/com\.google|label)/(.+)")


_LONG = len(ITEM_PREFIX) + 16


def long_id(story_id: int) -> str:
    return f"{ITEM_PREFIX}{story_id:016x}"


def parse_item_id(value: str) -> int | None:
    """A story id from any form a client sends, or None (malformed, zero, out of range)."""
    if len(value) == _LONG and value.startswith(ITEM_PREFIX) and _HEX16.fullmatch(value, len(ITEM_PREFIX)):
        short = int(value[len(ITEM_PREFIX) :], 16)  # the usual long form, as the general path reads it
        return short if 0 < short <= MAX_ID else None
    text = value.strip()
    number: int | None = None
    if text.startswith(ITEM_PREFIX):
        digits = text[len(ITEM_PREFIX) :]
        if _HEX.fullmatch(digits):
            number = int(digits, 16)
    elif len(text) == 16 and _HEX.fullmatch(text) and (not text.isdigit() or text.startswith("0")):
        number = int(text, 16)
    elif _DECIMAL.fullmatch(text):
        number = int(text)
        if number < 0:
            number += 2**64
    if number is None or not 0 < number <= MAX_ID:
        return None
    return number


@dataclass(frozen=True)
class Stream:
    """``kind``: reading-list, read, starred, feed (``value`` the feed number), label (``value`` the
    ticker) or empty (a state babelwire keeps nothing in, e.g. broadcast)."""

    kind: str
    value: str | int | None = None

    @property
    def id(self) -> str:
        if self.kind == "feed":
            return f"feed/{self.value}"
        if self.kind == "label":
            return f"{LABEL_PREFIX}{self.value}"
        return STATE_PREFIX + (self.kind if self.kind != "empty" else str(self.value))


def parse_stream(value: str | None) -> Stream | None:
    """The stream a client names (none or empty: the reading list); None when malformed."""
    text = (value or "").strip()
    if not text:
        return Stream("reading-list")
    if text.startswith("feed/"):
        number = text[5:]
        return Stream("feed", int(number)) if number.isdigit() and len(number) < 10 else None
    found = _STREAM.fullmatch(text)
    if found is None:
        return None
    what, name = found.groups()
    if what == "label":
        return Stream("label", name.strip().upper()) if 0 < len(name) <= 64 else None
    if name in ("reading-list", "read", "starred"):
        return Stream(name)
    return Stream("empty", name[:64])

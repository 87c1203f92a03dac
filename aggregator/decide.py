"""Decide stage: what to do with each normalized entry of one source. Pure: no I/O, no clock.

Spec, in order, for each entry of a fetched feed (feed order):

1. Its identity is the sha256 of the first of ``guid:<guid>``, ``link:<canonical link>``,
   ``title:<title>|<published date>`` that the entry has (see :func:`entry_identity`).
2. An identity already seen earlier in the same feed → ``ignore`` ("duplicate in feed"):
   only the first occurrence is acted on.
3. Not stored for this source → ``insert``, unless the entry has a guid and a link, and a stored
   item of the source has the same link and title while its own identity is absent from this
   feed: a feed that makes up a new guid on every fetch → that stored item (rules 4–6 on it).
4. Stored as a tombstone (deleted or hidden by an editor) → ``ignore``, whatever changed:
   tombstones keep removed items from coming back.
5. Stored with the same ``content_hash`` → ``ignore`` ("unchanged").
6. Stored with another ``content_hash`` → ``update`` of that stored item (same id).

``stored`` maps identities to what the store holds for this source; the caller looks up only
the identities of the entries at hand (:func:`entry_identity` of each). ``same_article`` maps
:func:`article_key` of stored items to them, looked up for the entries not found in ``stored``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # only a type here: a round of 304s never imports the normalizer
    from aggregator.normalize import NormalizedEntry

__all__ = ["Decision", "StoredItem", "article_key", "decide", "entry_identity"]


@dataclass(frozen=True)
class StoredItem:
    """What ``decide`` needs to know about an item already stored for the source."""

    id: int
    identity: str
    content_hash: str
    tombstone: bool


@dataclass(frozen=True)
class Decision:
    """One entry's fate; ``item_id`` is the stored item it concerns, if any."""

    action: Literal["insert", "update", "ignore"]
    identity: str
    entry: NormalizedEntry
    item_id: int | None
    reason: str


def entry_identity(entry: NormalizedEntry) -> str:
    """sha256 hex of the entry's most stable key: guid, else canonical link, else title + day.

    The title fallback uses the publication *date* (UTC day), not the time, so a feed that
    rewrites times keeps one identity a day; an entry without any date gets the fetch time as
    ``published_at`` and thus a new identity each day — such entries have nothing better.
    """
    if entry.guid:
        key = f"guid:{entry.guid}"
    elif entry.link:
        key = f"link:{entry.link}"
    else:
        key = f"title:{entry.title}|{entry.published_at.date().isoformat()}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def article_key(link: str | None, title: str) -> str | None:
    """Link + title: what says "the same article" when a feed's guids cannot be trusted."""
    if not link:
        return None
    return hashlib.sha256(f"{link}\n{title[:2000]}".encode("utf-8", "surrogatepass")).hexdigest()


def decide(
    entries: Sequence[NormalizedEntry],
    stored: Mapping[str, StoredItem],
    same_article: Mapping[str, StoredItem] | None = None,
) -> list[Decision]:
    """One :class:`Decision` per entry, in feed order (see the module docstring)."""
    decisions: list[Decision] = []
    seen: set[str] = set()
    in_feed = {entry_identity(e) for e in entries}
    for entry in entries:
        identity = entry_identity(entry)
        item = stored.get(identity)
        if item is None and same_article and entry.guid:
            twin = same_article.get(article_key(entry.link, entry.title) or "")
            if twin is not None and twin.identity not in in_feed:
                identity, item = twin.identity, twin  # the feed changed the guid, not the article
        item_id = item.id if item is not None else None
        if identity in seen:
            decisions.append(Decision("ignore", identity, entry, item_id, "duplicate in feed"))
            continue
        seen.add(identity)
        if item is None:
            decisions.append(Decision("insert", identity, entry, None, "new"))
        elif item.tombstone:
            decisions.append(Decision("ignore", identity, entry, item_id, "tombstone"))
        elif item.content_hash == entry.content_hash:
            decisions.append(Decision("ignore", identity, entry, item_id, "unchanged"))
        else:
            decisions.append(Decision("update", identity, entry, item_id, "content changed"))
    return decisions

"""Features made at ingest: the poll round hands each stored item's fields to its parse processes,
which extract and encode its dedupe features while the round goes on fetching; a dedupe run then
finds them stored (``Item.dedupe_features`` under a matching ``dedupe_key``) and only clusters.

The item → ``DedupeDoc`` mapping (:func:`doc_from`) and the default extractor
(:func:`default_extractor`) live here, so the poll round and ``run_dedupe`` build the same docs
with the same extractor, and a feature made at ingest is the one a run would make: the key a run
computes from the stored row is the one stored with it. When they differ (another lexicon, a row
changed since), the run re-extracts: features made here are a cache, never a decision.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aggregator.dedupe.codec import dedupe_key, encode
from aggregator.dedupe.features import DedupeDoc, Extractor


def doc_from(
    *,
    id: int,
    locale: str,
    outlet: str,
    link: str | None,
    guid: str | None,
    title: str,
    text: str | None,
    published_at: datetime,
    image: str | None,
    links: Mapping[str, Any] | None,
    tickers: Sequence[str] | None,
    language: str | None,
) -> DedupeDoc:
    """The ``DedupeDoc`` of a stored item, from its columns and its source's outlet."""
    return DedupeDoc(
        id=id,
        locale=locale,
        outlet=outlet,
        url=link or guid or f"item:{id}",
        title=title,
        text=text or title,
        published_at=published_at,
        image=image,
        guid=guid,
        links=links or {},
        tickers=tuple(tickers or ()),
        language=language,
    )


def article_key_fn() -> Any:
    """The catalogue's cross-locale article-id rule, or None without the catalogue."""
    try:
        from sources.catalogue import article_key
    except ImportError:  # catalogue not installed: fall back to the generic /news/detail/<id> rule
        return None
    return article_key


@functools.cache
def default_extractor() -> Extractor:
    """The extractor ``run_dedupe`` uses by default, built once per process (it loads the lexicon)."""
    return Extractor(article_key=article_key_fn())


def encoded_features(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The job a parse process runs: each item's stored features, as ``{"item_id", "key", "blob"}``
    rows for ``aggregator.store.store_features``. ``items``: :func:`doc_from`'s keyword arguments
    (plain values, as the round stored them)."""
    ex = default_extractor()
    out: list[dict[str, Any]] = []
    for item in items:
        doc = doc_from(**item)
        out.append({"item_id": doc.id, "key": dedupe_key(ex, doc), "blob": encode(ex.features(doc))})
    return out

"""The blocking keys: what an item is indexed under and what it queries (pure).

The index itself is compiled (``_index.pyx``: which earlier items a newcomer is compared with,
and related to); ``tests/dedupe_oracle/index.py`` is its plain-Python oracle. Rules in
``cluster`` (point 2) and ``policy.Thresholds`` (Blocking).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregator.dedupe.numbers import buckets_near
from aggregator.dedupe.policy import Thresholds

if TYPE_CHECKING:
    from aggregator.dedupe.features import Features

PLAIN, FIGURE, BAND = 0, 1, 2
"""Kinds of query keys: figures have their own ``max_figure_postings``; MinHash bands are not anchors."""

Related = list[tuple[int, float, int]]
"""(other story, related weight, the item of that story that carries it), one per story."""
KeysFor = tuple[float, float, int]
"""The thresholds an item's keys depend on (``keys_for``)."""
Keys = tuple[KeysFor, tuple[str, ...], tuple[tuple[str, float, int], ...]]
"""(``keys_for``, the keys an item is indexed under, its query), as ``Features.blocking`` keeps them."""


def keys_for(t: Thresholds) -> KeysFor:
    return (t.figure_tolerance, t.index_entity_weight, t.minhash_bands)


def blocking_keys(f: Features, t: Thresholds) -> Keys:
    """The keys ``f`` is indexed under and its query, for thresholds ``t``: worked out once per item
    when its features are extracted (and stored with them), since the clusterer needs them for
    every run over a window that holds the item.

    Indexed: identity keys, declared links, body links, the image, heavy figures (bucketed), entities
    weighing ``index_entity_weight`` or more, names, MinHash bands. Queried: the same anchors, figures
    with their ``figure_tolerance`` neighbours, identity and declared keys in both directions."""
    identity, declared, cites = sorted(f.identity), sorted(f.declared), sorted(f.cites)
    bands = _bands(f, t.minhash_bands)
    floor = t.index_entity_weight
    heavy = [(value, weight) for value, weight in f.figures if weight >= 0.5]
    entities = [("e:" + key, weight) for key, weight in f.entities.items() if weight >= floor]
    names = [("e:" + key, weight) for key, weight in f.names.items()]
    keys = ["id:" + k for k in identity]
    keys += ["decl:" + u for u in declared]
    keys += ["cite:" + u for u in cites]
    if f.image:
        keys.append("img:" + f.image)
    for value, _ in heavy:
        keys += _figure_keys(value, 0.0)
    keys += [key for key, _ in entities]
    keys += [key for key, _ in names]
    keys += bands
    query: list[tuple[str, float, int]] = []
    for k in identity:
        query += [("id:" + k, 100.0, PLAIN), ("decl:" + k, 100.0, PLAIN), ("cite:" + k, 5.0, PLAIN)]
    for u in declared:
        query += [("id:" + u, 100.0, PLAIN), ("decl:" + u, 100.0, PLAIN)]
    query += [("id:" + u, 5.0, PLAIN) for u in cites]
    if f.image:
        query.append(("img:" + f.image, 5.0, PLAIN))
    for value, weight in heavy:
        query += [(key, weight, FIGURE) for key in _figure_keys(value, t.figure_tolerance)]
    query += [(key, weight, PLAIN) for key, weight in entities]
    query += [(key, weight * 0.5, PLAIN) for key, weight in names]
    query += [(b, 1.0, BAND) for b in bands]
    return keys_for(t), tuple(keys), tuple(query)


def _bands(f: Features, bands: int) -> list[str]:
    """MinHash band keys: same-language near-duplicates share at least one (``hash`` of a tuple of
    ints is the same in every process)."""
    if f.minhash is None:
        return []
    rows = len(f.minhash) // bands
    mh, fam = f.minhash, f.near_family
    return [
        f"mh:{fam}:{band}:{hash(mh[band * rows : (band + 1) * rows]) & 0xFFFFFFFF}" for band in range(bands)
    ]


_FIGURE_KEYS: dict[tuple[float, float], tuple[str, ...]] = {}


def _figure_keys(value: float, tolerance: float) -> tuple[str, ...]:
    """``f:`` index keys of ``buckets_near(value, tolerance)``, remembered: the versions of a story
    carry the same figures."""
    keys = _FIGURE_KEYS.get((value, tolerance))
    if keys is None:
        if len(_FIGURE_KEYS) >= 1 << 16:
            _FIGURE_KEYS.clear()
        keys = _FIGURE_KEYS[(value, tolerance)] = tuple("f:" + b for b in buckets_near(value, tolerance))
    return keys

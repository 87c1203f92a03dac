"""The blocking index: which earlier items a newcomer is compared with, and related to (pure).

``PyIndex`` is the reference, in Python and numpy; ``_index.Index`` (Cython, built by
``tools/build_native.py``) is its compiled twin with the same interface and the same sums in the
same order, used when it is built (``make_index``). Rules in ``cluster`` (point 2) and
``policy.Thresholds`` (Blocking).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

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


class Index(Protocol):
    """What the clusterer needs of an index (``PyIndex`` and ``_index.Index`` both are one)."""

    def place(self, doc_id: int, ts: float, figure_mass: float, story: int, keys: tuple[str, ...]) -> int: ...

    def remove(self, o: int, keys: tuple[str, ...]) -> None: ...

    def set_story(self, o: int, story: int) -> None: ...

    def candidates(
        self,
        query: tuple[tuple[str, float, int], ...],
        fts: float,
        window: float,
        figure_mass: float,
        light_figures: float,
        t: Thresholds,
    ) -> tuple[list[int], Related]: ...


def native_index() -> Index | None:
    """The compiled index, or None when ``tools/build_native.py`` has not built it."""
    try:
        from aggregator.dedupe import _index
    except ImportError:
        return None
    index: Index = _index.Index()
    return index


def make_index(native: bool | None = None) -> Index:
    """The compiled index when built (``native`` None or True), else ``PyIndex``; ``native=True``
    fails when it is not built."""
    if native is not False:
        index = native_index()
        if index is not None:
            return index
        if native:
            raise RuntimeError("the native dedupe kernels are not built: run `make` (tools/build_native.py)")
    return PyIndex()


class PyIndex:
    """Index key → placement ordinals of the items carrying it; per ordinal the item's time, id,
    story and figure mass, in numpy arrays, so that one newcomer's postings are gathered,
    window-filtered and summed with numpy."""

    def __init__(self) -> None:
        self.postings: dict[str, array[int]] = {}
        self.next_ord = 0
        self.base = 0
        """The ordinal at index 0 of the arrays below (ordinals before it all left the window)."""
        self._ts = np.zeros(1024)
        self._doc = np.zeros(1024, dtype=np.int64)
        self._story = np.zeros(1024, dtype=np.int64)
        self._figure_mass = np.zeros(1024)
        self._alive = np.zeros(1024, dtype=bool)
        self.in_order = True
        """Every item so far came no earlier than the one before: postings are sorted by time."""
        self._latest = float("-inf")

    def place(self, doc_id: int, ts: float, figure_mass: float, story: int, keys: tuple[str, ...]) -> int:
        """Index one item under ``keys``; its placement ordinal."""
        if ts < self._latest:
            self.in_order = False
        else:
            self._latest = ts
        o = self.next_ord
        i = o - self.base
        size = len(self._ts)
        if i == size:
            # Drop the ordinals that left the window before growing (memory bounded by the window).
            alive = self._alive
            first = int(alive.argmax()) if alive.any() else size
            arrays = (self._ts, self._doc, self._story, self._figure_mass, alive)
            if first >= size // 2:
                keep = size - first
                for arr in arrays:
                    arr[:keep] = arr[first:]
                    arr[keep:] = 0
                self.base += first
            else:
                grown = [np.concatenate([arr, np.zeros(size, dtype=arr.dtype)]) for arr in arrays]
                self._ts, self._doc, self._story, self._figure_mass, self._alive = grown
            i = o - self.base
        self._ts[i] = ts
        self._doc[i] = doc_id
        self._story[i] = story
        self._figure_mass[i] = figure_mass
        self._alive[i] = True
        self.next_ord = o + 1
        postings = self.postings
        for key in keys:
            p = postings.get(key)
            if p is None:
                postings[key] = array("q", (o,))
            else:
                p.append(o)
        return o

    def remove(self, o: int, keys: tuple[str, ...]) -> None:
        """Take an item out of the index (it left the window)."""
        self._alive[o - self.base] = False
        postings = self.postings
        for key in keys:
            p = postings[key]
            if p[0] == o:
                del p[0]
            else:
                p.remove(o)
            if not p:
                del postings[key]

    def set_story(self, o: int, story: int) -> None:
        self._story[o - self.base] = story

    def candidates(
        self,
        query: tuple[tuple[str, float, int], ...],
        fts: float,
        window: float,
        figure_mass: float,
        light_figures: float,
        t: Thresholds,
    ) -> tuple[list[int], Related]:
        """For a newcomer published at ``fts`` with ``query`` and ``figure_mass`` (``light_figures``:
        the weight of its figures too light to index): the items worth a full comparison, and
        per other story its item with the most related weight (ties: the lower id), stories in
        the order their items were placed."""
        max_postings, rare = t.max_postings, t.rare_postings
        max_figure_postings = t.max_figure_postings
        # Per walked key: how many postings, and what each of its items adds to ``hits`` (the
        # weight scaled by rarity), to ``other`` (the part from keys that are not anchors:
        # identity, links, images, MinHash bands; taken back out of ``hits`` for the related
        # weight, which counts anchors only), to ``figures`` (a figure's own weight), whether it
        # marks the item ``declared`` (shares a declared link, image or cite) and whether it is
        # exempt from the window (declared identity).
        ords: array[int] = array("q")
        rows: list[tuple[int, float, float, float, float, float]] = []
        unseen_figures = 0.0
        seen_keys: set[str] = set()
        postings_of = self.postings
        any_other = any_figure = any_declared = any_exempt = False
        for key, weight, kind in query:
            if key in seen_keys:
                continue
            seen_keys.add(key)
            postings = postings_of.get(key)
            if not postings:
                continue
            n = len(postings)
            if weight >= 100.0:
                rows.append((n, weight, weight, 0.0, 1.0, 1.0))
                any_other = any_declared = any_exempt = True
            elif weight < 5.0:
                scaled = weight * rare / n if n > rare else weight  # rarity in the window
                if kind == FIGURE:
                    if n > max_figure_postings:
                        unseen_figures += weight
                        continue
                    rows.append((n, scaled, 0.0, weight, 0.0, 0.0))
                    any_figure = True
                else:
                    if n > max_postings:
                        continue
                    if kind == BAND:
                        rows.append((n, scaled, scaled, 0.0, 0.0, 0.0))
                        any_other = True
                    else:
                        rows.append((n, scaled, 0.0, 0.0, 0.0, 0.0))
            elif kind == FIGURE:
                rows.append((n, weight, weight, weight, 0.0, 0.0))
                any_other = any_figure = True
            else:
                rows.append((n, weight, weight, 0.0, 1.0, 0.0))
                any_other = any_declared = True
            ords.extend(postings)
        if not rows:
            return [], []
        # Every posting entry of every walked key, in key order: ``np.bincount`` sums each item's
        # weights in that order, as a loop over the keys would (the same floats to the last bit).
        table = np.array(rows)
        row_of = np.repeat(np.arange(len(rows)), table[:, 0].astype(np.intp))
        index = np.frombuffer(ords, dtype=np.int64) - self.base
        ts = self._ts[index]
        # The window as bounds while items came in time order, as a distance otherwise.
        keep = (ts >= fts - window) & (ts <= fts + window) if self.in_order else np.abs(ts - fts) <= window
        if any_exempt:
            keep |= table[row_of, 5] > 0
        index, row_of = index[keep], row_of[keep]
        size = self.next_ord - self.base

        def total(column: int) -> np.ndarray[Any, Any]:
            return np.bincount(index, table[row_of, column], size)

        hits = total(1)
        min_hits, floor = t.min_candidate_hits, t.related
        present = np.bincount(index, None, size) > 0 if min(min_hits, floor) <= 0 else None
        # An item no walked key found has ``hits`` 0: ``present`` matters only for a bar at 0 or below.
        local = np.flatnonzero(hits >= min_hits if present is None else present & (hits >= min_hits))
        doc_ids = self._doc[local]
        ranked = np.lexsort((doc_ids, -hits[local]))
        # The best ``max_candidates``; then items that share a figure (or a declared link, image or
        # cite) ranked below them, up to ``max_candidates`` of those in all: on a busy day a dozen
        # look-alike reports (a template filled with other numbers) share more names with a
        # newcomer than its translation does, but only the translation shares its figures.
        top = t.max_candidates
        out: list[tuple[int, int]] = []
        if len(ranked):
            figures = total(3) if any_figure else np.zeros(size)
            declared = total(4) > 0 if any_declared else np.zeros(size, dtype=bool)
            strong = declared | (figures > 0)
            ranked_local = local[ranked].tolist()
            ranked_docs = doc_ids[ranked].tolist()
            out = list(zip(ranked_docs[:top], ranked_local[:top], strict=True))
            room = top - sum(1 for _, i in out if strong[i])
            for d, i in zip(ranked_docs[top:], ranked_local[top:], strict=True):
                if room <= 0:
                    break
                if strong[i]:
                    out.append((d, i))
                    room -= 1
            # A content merge needs ``min_figures`` of the newcomer's figures found in the other
            # item (when both carry figures): bounded above by the heavy figures the index found,
            # plus the light ones it does not index, plus those behind postings too long to walk.
            if figure_mass >= 0.5 and out:
                need = t.min_figures * figure_mass - (light_figures + unseen_figures) - 1e-9
                masses = self._figure_mass
                out = [(d, i) for d, i in out if declared[i] or figures[i] >= need or masses[i] < 0.5]
        related = hits - total(2) if any_other else hits
        bar = (hits >= floor) & (related >= floor)
        bar &= np.abs(self._ts[:size] - fts) <= t.related_hours * 3600.0
        linked = np.flatnonzero(bar if present is None else present & bar)
        # Per other story, its item with the most related weight (ties: the lowest id).
        best: dict[int, tuple[float, int]] = {}
        for story, score, d in zip(
            self._story[linked].tolist(), related[linked].tolist(), self._doc[linked].tolist(), strict=True
        ):
            held = best.get(story)
            if held is None or score > held[0] or (score == held[0] and d < held[1]):
                best[story] = (score, d)
        return [d for d, _ in out], [(story, score, d) for story, (score, d) in best.items()]

"""The oracle of dedupe's blocking index: ``aggregator/dedupe/_index.pyx`` in Python and numpy.

Same interface as ``_index.Index``; the tests cluster with both and compare the stories, kinds
and related links (``tests/test_dedupe_kernels.py``).
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from aggregator.dedupe.blocking import BAND, FIGURE, Related
from aggregator.dedupe.policy import Thresholds


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
        # Every posting entry of every walked key: ``np.bincount`` sums each item's weights.
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

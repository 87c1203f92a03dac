"""The oracle of dedupe's pair scoring: ``aggregator/dedupe/_pairs.pyx`` in plain Python.

Every signal of ``PairScore`` computed the readable way, for the tests: the compiled kernel must
reach the same decisions (declared, image, cite, clash, which parts are present) and the same
scores up to rounding (``tests/test_dedupe_native.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import replace
from operator import eq

from aggregator.dedupe.features import Features
from aggregator.dedupe.numbers import close
from aggregator.dedupe.policy import Thresholds
from aggregator.dedupe.similarity import PairScore


def _figure_coverage(a: Features, b: Features, tol: float) -> tuple[tuple[float, float] | None, float]:
    """((coverage of the less covered side, of the more covered side), shared weight)."""
    ma, mb = a.figure_mass, b.figure_mass
    if not a.figures or not b.figures:
        return None, 0.0
    bvals, values = b.figures_sorted, b.figures_sorted_values
    matched_a = shared = 0.0
    matched_b_idx: set[int] = set()
    for v, w in a.figures:
        j = _find_close(values, v, tol)
        if j is not None:
            matched_a += w
            wb = bvals[j][1]
            shared += w if w <= wb else wb
            matched_b_idx.add(j)
    matched_b = sum(bvals[j][1] for j in matched_b_idx)
    if ma < 0.5 or mb < 0.5:
        return None, shared
    return (min(matched_a / ma, matched_b / mb), max(matched_a / ma, matched_b / mb)), shared


def _find_close(values: Sequence[float], v: float, tol: float) -> int | None:
    """The index of the first of the sorted ``values`` from ``v * (1 - tol)`` on, up to
    ``v * (1 + tol)``, that is ``close`` to ``v``."""
    i = bisect_left(values, v * (1 - tol))
    end, hi = len(values), v * (1 + tol) + 1e-12
    while i < end:
        u = values[i]
        if u > hi:
            return None
        if u == v or abs(u - v) <= tol * max(abs(u), abs(v)):  # ``close(u, v, tol)``
            return i
        i += 1
    return None


def _entity_coverage(a: Features, b: Features) -> tuple[tuple[float, float] | None, float]:
    """(two-way coverage, shared weight).

    Title-case words outside the lexicon (``names``) count against coverage only between texts of
    one language: across languages they may be translated, so only the ones found on both sides count.
    """
    shared = 0.0
    a_names_shared = b_names_shared = 0.0
    b_weights, b_names = b.anchor_weights, b.names
    for key, w in a.entities.items():
        other = b_weights.get(key)
        if other:
            m = w if w <= other else other
            shared += m
            if key in b_names:
                b_names_shared += other
    for key, w in a.names.items():
        other = b_weights.get(key)
        if other:
            m = w if w <= other else other
            shared += m
            a_names_shared += w
            if key in b_names:
                b_names_shared += other
    if a.near_family == b.near_family:
        mass_a, mass_b = a.entity_mass + a.name_mass, b.entity_mass + b.name_mass
    else:
        mass_a, mass_b = a.entity_mass + a_names_shared, b.entity_mass + b_names_shared
    if mass_a < 0.5 or mass_b < 0.5:
        return None, shared
    return (
        (min(1.0, shared / mass_a, shared / mass_b), min(1.0, max(shared / mass_a, shared / mass_b))),
        shared,
    )


def _order(a: Features, b: Features, tol: float) -> float | None:
    """Share of the shared anchors that come in the same order (longest increasing run)."""
    indices: list[int] = []
    figs_b = b.seq_figures
    for key, value in zip(a.sequence, a.seq_values, strict=True):
        if value is None:
            j = b.seq_index.get(key)
        else:
            k = bisect_left(figs_b, (value * (1 - tol), -1))
            j = figs_b[k][1] if k < len(figs_b) and figs_b[k][0] <= value * (1 + tol) + 1e-12 else None
        if j is not None:
            indices.append(j)
    if len(indices) < 3:
        return None
    tails: list[int] = []
    for x in indices:
        k = bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
        else:
            tails[k] = x
    return len(tails) / len(indices)


def _close_range(v: float, tol: float) -> tuple[float, float]:
    """Bounds that hold every figure ``close`` to ``v`` (a hair wider: ``close`` has the last word)."""
    if not 0 <= tol < 1 or not math.isfinite(v):
        return -math.inf, math.inf
    lo, hi = v * (1 - tol), v / (1 - tol)
    if lo > hi:
        lo, hi = hi, lo
    return lo - abs(lo) * 1e-9, hi + abs(hi) * 1e-9


def paragraph_alignment(a: Features, b: Features, tol: float) -> tuple[float, float] | None:
    """How paragraph by paragraph ``a`` follows ``b``: (mean similarity of the paragraphs matched
    in order, over the shorter text's paragraphs; the share of ``a``'s best unordered matches that
    the in-order matching keeps). A translation keeps its original's paragraphs in order, so both
    are high; an independent report of the same facts groups and orders them its own way.

    Two paragraphs' similarity is the Dice of their anchors, figures counted twice (they carry
    more than names): 4 per figure of ``a``'s paragraph with a close one in ``b``'s, 2 per shared
    entity or name, over twice the figures plus the entities of both. The shared anchors are
    found from each side's paragraph index (``Features.paragraph_figures`` and
    ``paragraph_entities``), not by comparing every paragraph with every other."""
    sizes_a, sizes_b = a.paragraph_sizes, b.paragraph_sizes
    n, m = len(sizes_a), len(sizes_b)
    if not n or not m:
        return None
    shared = [[0] * m for _ in range(n)]
    figures_b = b.paragraph_figures
    if figures_b:
        end = len(figures_b)
        for i, (figs, _) in enumerate(a.paragraphs):
            counts = shared[i]
            for v in figs:
                lo, hi = _close_range(v, tol)
                k = bisect_left(figures_b, (lo, -1))
                found: set[int] = set()
                while k < end and figures_b[k][0] <= hi:
                    u, j = figures_b[k]
                    if j not in found and close(v, u, tol):
                        found.add(j)
                        counts[j] += 4
                    k += 1
    ents_a, ents_b = a.paragraph_entities, b.paragraph_entities
    for key in ents_a.keys() & ents_b.keys():
        js = ents_b[key]
        for i in ents_a[key]:
            counts = shared[i]
            for j in js:
                counts[j] += 2
    sim = [
        [s / (size_a + size_b) if size_a + size_b else 0.0 for s, size_b in zip(row, sizes_b, strict=True)]
        for row, size_a in zip(shared, sizes_a, strict=True)
    ]
    # Longest common subsequence, weighted by similarity (monotone alignment).
    prev = [0.0] * (m + 1)
    for i in range(n):
        row = sim[i]
        cur = [0.0] * (m + 1)
        for j in range(m):
            diag = prev[j] + row[j]
            best = prev[j + 1] if prev[j + 1] > cur[j] else cur[j]
            cur[j + 1] = diag if diag > best else best
        prev = cur
    ordered = prev[m]
    unordered = sum(max(row) for row in sim)
    return ordered / min(n, m), (ordered / unordered if unordered else 0.0)


def _clash(a: Features, b: Features, tol: float) -> bool:
    """Both headlines carry figures, and neither headline's figures appear anywhere in the other."""
    if not a.title_figures or not b.title_figures:
        return False
    bvals, avals = b.figures_sorted_values, a.figures_sorted_values
    a_in_b = any(_find_close(bvals, v, tol) is not None for v in a.title_figures)
    b_in_a = any(_find_close(avals, v, tol) is not None for v in b.title_figures)
    return not a_in_b and not b_in_a


def _declared(a: Features, b: Features) -> str | None:
    if not a.identity.isdisjoint(b.identity):
        return "same-article"
    if not a.declared:
        return None if b.declared.isdisjoint(a.identity) else "attribution"
    if not (a.declared.isdisjoint(b.identity) and b.declared.isdisjoint(a.identity)):
        return "attribution"
    if not a.declared.isdisjoint(b.declared):
        return "same-original"
    return None


def jaccard(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> float:
    if a is None or b is None:
        return 0.0
    if len(a) != len(b):
        raise ValueError("MinHash signatures of different lengths")
    return sum(map(eq, a, b)) / len(a)


def _blend(fig_part: float | None, ent_part: float | None, order: float | None, t: Thresholds) -> float:
    parts = [(fig_part, t.figure_share), (ent_part, t.entity_share), (order, t.order_share)]
    total = sum(w for v, w in parts if v is not None)
    return sum(v * w for v, w in parts if v is not None) / total if total else 0.0


def _parts(p: PairScore, t: Thresholds) -> tuple[float | None, float | None]:
    """The figure and entity parts of the score, from the coverages."""
    fig_part = None
    if p.figures is not None and p.figures_max is not None:
        fig_part = (1 - t.containment) * p.figures + t.containment * p.figures_max
    ent_part = None
    if p.entities is not None and p.entities_max is not None:
        ent_part = (p.entities + p.entities_max) / 2
    return fig_part, ent_part


def compare(a: Features, b: Features, t: Thresholds, *, full: bool = True) -> PairScore:
    """Every signal between ``a`` and ``b``; ``score`` blends the content ones (0–1).

    With ``full=False`` the order of anchors (the costly part) is left out where it would count:
    ``complete`` is then False and ``score`` is an upper bound (the score with every anchor in
    order); ``finish`` adds the order. A pair whose bound misses a threshold never needs it.
    """
    tol = t.figure_tolerance
    fig_cov, fig_shared = _figure_coverage(a, b, tol)
    ent_cov, ent_shared = _entity_coverage(a, b)
    mass = fig_shared + ent_shared
    fig_part = (1 - t.containment) * fig_cov[0] + t.containment * fig_cov[1] if fig_cov else None
    ent_part = (ent_cov[0] + ent_cov[1]) / 2 if ent_cov else None
    order = None
    layout = None
    complete = True
    # Order only matters for pairs that could merge at all (it is the costly part).
    if mass < t.min_mass_with_image:
        score = _blend(fig_part, ent_part, None, t)
    elif full:
        order = _order(a, b, tol)
        score = _blend(fig_part, ent_part, order, t)
        layout = paragraph_alignment(a, b, tol)
    else:
        complete = False
        score = max(_blend(fig_part, ent_part, None, t), _blend(fig_part, ent_part, 1.0, t))
    return PairScore(
        declared=_declared(a, b),
        image=bool(a.image and a.image == b.image),
        cite=not (a.cites.isdisjoint(b.identity) and b.cites.isdisjoint(a.identity)),
        near_duplicate=jaccard(a.minhash, b.minhash) if a.near_family == b.near_family else 0.0,
        figures=fig_cov[0] if fig_cov else None,
        figures_max=fig_cov[1] if fig_cov else None,
        entities=ent_cov[0] if ent_cov else None,
        entities_max=ent_cov[1] if ent_cov else None,
        order=order,
        score=score,
        mass=mass,
        clash=_clash(a, b, tol),
        hours=abs(a.ts - b.ts) / 3600.0,
        complete=complete,
        layout=layout,
    )


def with_layout(p: PairScore, a: Features, b: Features, t: Thresholds) -> PairScore:
    """``p`` with the paragraph layout of ``a`` against ``b`` filled in."""
    return replace(p, layout=paragraph_alignment(a, b, t.figure_tolerance))


def finish(p: PairScore, a: Features, b: Features, t: Thresholds, *, layout: bool = True) -> PairScore:
    """``p`` (from ``compare(a, b, t, full=False)``) with the order of anchors and the exact score;
    with ``layout=False`` the paragraph layout is left out (None) for a caller that reads only
    the score."""
    if p.complete:
        return p
    fig_part, ent_part = _parts(p, t)
    order = _order(a, b, t.figure_tolerance)
    return replace(
        p,
        order=order,
        score=_blend(fig_part, ent_part, order, t),
        complete=True,
        layout=paragraph_alignment(a, b, t.figure_tolerance) if layout else None,
    )


class PairKernel:
    """What ``aggregator.dedupe.kernels.PairKernel`` does for a clusterer (``compare`` without the
    order, ``finish`` without the layout, ``with_layout``), with the functions above."""

    def __init__(self, t: Thresholds) -> None:
        self.t = t

    def prepare(self, f: Features) -> None:
        """Ready ``f`` for comparisons (nothing to do in Python)."""

    def forget(self, doc_id: int) -> None:
        """``doc_id`` will not be compared again."""

    def compare(self, a: Features, b: Features) -> PairScore:
        return compare(a, b, self.t, full=False)

    def compare_many(
        self, a: Features, doc_ids: list[int], docs: Mapping[int, Features]
    ) -> dict[int, PairScore]:
        """``compare(a, docs[d])`` for each of ``doc_ids``."""
        t = self.t
        return {d: compare(a, docs[d], t, full=False) for d in doc_ids}

    def finish(self, p: PairScore, a: Features, b: Features) -> PairScore:
        return finish(p, a, b, self.t, layout=False)

    def with_layout(self, p: PairScore, a: Features, b: Features) -> PairScore:
        return with_layout(p, a, b, self.t)

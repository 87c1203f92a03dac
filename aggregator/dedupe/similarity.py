"""How alike two documents are, signal by signal (pure)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import eq
from typing import Any

from aggregator.dedupe.features import Features
from aggregator.dedupe.numbers import bucket, close
from aggregator.dedupe.policy import Thresholds


@dataclass(frozen=True, slots=True)
class PairScore:
    """The evidence that two documents are versions of one article, and that they share an event."""

    declared: str | None
    """``same-article`` | ``attribution`` | ``same-original`` when identity is declared."""
    image: bool
    cite: bool
    near_duplicate: float
    figures: float | None
    """Weighted coverage of the figures of the less covered side by the other's."""
    figures_max: float | None
    """... and of the more covered side: a translation that drops a paragraph is still contained."""
    entities: float | None
    entities_max: float | None
    order: float | None
    score: float
    mass: float
    clash: bool
    related: float
    hours: float
    shared: tuple[tuple[str, float], ...] = ()
    """(index key, weight) of the anchors both carry, for rarity-weighted related links."""
    complete: bool = True
    """False: ``order`` is not computed yet and ``score`` is only an upper bound (see ``compare``)."""
    layout: tuple[float, float] | None = None
    """(how well the paragraphs match when kept in order, the share of the best unordered match
    that order keeps), from ``paragraph_alignment``; None until ``finish`` (or no paragraphs)."""

    def signals(self) -> dict[str, Any]:
        out: dict[str, Any] = {"score": round(self.score, 3), "mass": round(self.mass, 2)}
        if self.declared:
            out["declared"] = self.declared
        if self.image:
            out["image"] = True
        if self.cite:
            out["cite"] = True
        if self.near_duplicate:
            out["near_duplicate"] = round(self.near_duplicate, 3)
        for name in ("figures", "figures_max", "entities", "entities_max", "order"):
            value = getattr(self, name)
            if value is not None:
                out[name] = round(value, 3)
        if self.layout is not None:
            out["paragraphs"] = round(self.layout[0], 3)
            out["paragraph_order"] = round(self.layout[1], 3)
        if self.clash:
            out["headline_clash"] = True
        out["hours"] = round(self.hours, 2)
        return out


def _figure_coverage(
    a: Features, b: Features, tol: float, shared_keys: list[tuple[str, float]]
) -> tuple[tuple[float, float] | None, float, float]:
    """((coverage of the less covered side, of the more covered side), shared weight, of it rare)."""
    ma, mb = a.figure_mass, b.figure_mass
    if not a.figures or not b.figures:
        return None, 0.0, 0.0
    bvals = b.figures_sorted
    matched_a = shared = rare = 0.0
    matched_b_idx: set[int] = set()
    for v, w in a.figures:
        j = _find_close(bvals, v, tol)
        if j is not None:
            matched_a += w
            wb = bvals[j][1]
            shared += min(w, wb)
            if min(w, wb) >= 0.5:
                rare += min(w, wb)
                shared_keys.append(("f:" + bucket(v), min(w, wb)))
            matched_b_idx.add(j)
    matched_b = sum(bvals[j][1] for j in matched_b_idx)
    if ma < 0.5 or mb < 0.5:
        return None, shared, rare
    return (min(matched_a / ma, matched_b / mb), max(matched_a / ma, matched_b / mb)), shared, rare


def _find_close(sorted_vals: Sequence[tuple[float, float]], v: float, tol: float) -> int | None:
    i = bisect_left(sorted_vals, (v * (1 - tol), -1.0))
    while i < len(sorted_vals) and sorted_vals[i][0] <= v * (1 + tol) + 1e-12:
        if close(sorted_vals[i][0], v, tol):
            return i
        i += 1
    return None


def _entity_coverage(
    a: Features, b: Features, rare_min: float, shared_keys: list[tuple[str, float]]
) -> tuple[tuple[float, float] | None, float, float]:
    """(two-way coverage, shared weight, shared weight of rare entities).

    Title-case words outside the lexicon (``names``) count against coverage only between texts of
    one language: across languages they may be translated, so only the ones found on both sides count.
    """
    shared = rare = 0.0
    a_names_shared = b_names_shared = 0.0
    b_weights, b_names = b.anchor_weights, b.names
    for key, w in a.entities.items():
        other = b_weights.get(key)
        if other:
            m = w if w <= other else other
            shared += m
            shared_keys.append(("e:" + key, m))
            if m >= rare_min:
                rare += m
            if key in b_names:
                b_names_shared += other
    for key, w in a.names.items():
        other = b_weights.get(key)
        if other:
            m = w if w <= other else other
            shared += m
            shared_keys.append(("e:" + key, m))
            if m >= rare_min:
                rare += m
            a_names_shared += w
            if key in b_names:
                b_names_shared += other
    if a.near_family == b.near_family:
        mass_a, mass_b = a.entity_mass + a.name_mass, b.entity_mass + b.name_mass
    else:
        mass_a, mass_b = a.entity_mass + a_names_shared, b.entity_mass + b_names_shared
    if mass_a < 0.5 or mass_b < 0.5:
        return None, shared, rare
    return (
        (min(1.0, shared / mass_a, shared / mass_b), min(1.0, max(shared / mass_a, shared / mass_b))),
        shared,
        rare,
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


def _paragraph_similarity(
    pa: tuple[tuple[float, ...], frozenset[str]], pb: tuple[tuple[float, ...], frozenset[str]], tol: float
) -> float:
    """Dice of two paragraphs' anchors, figures counted twice (they carry more than names)."""
    figs_a, ents_a = pa
    figs_b, ents_b = pb
    den = 2 * (len(figs_a) + len(figs_b)) + len(ents_a) + len(ents_b)
    if not den:
        return 0.0
    matched = sum(1 for v in figs_a if any(close(v, u, tol) for u in figs_b))
    return (4 * matched + 2 * len(ents_a & ents_b)) / den


def paragraph_alignment(a: Features, b: Features, tol: float) -> tuple[float, float] | None:
    """How paragraph by paragraph ``a`` follows ``b``: (mean similarity of the paragraphs matched
    in order, over the shorter text's paragraphs; the share of ``a``'s best unordered matches that
    the in-order matching keeps). A translation keeps its original's paragraphs in order, so both
    are high; an independent report of the same facts groups and orders them its own way."""
    pa, pb = a.paragraphs, b.paragraphs
    n, m = len(pa), len(pb)
    if not n or not m:
        return None
    sim = [[_paragraph_similarity(x, y, tol) for y in pb] for x in pa]
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
    bvals, avals = b.figures_sorted, a.figures_sorted
    a_in_b = any(_find_close(bvals, v, tol) is not None for v in a.title_figures)
    b_in_a = any(_find_close(avals, v, tol) is not None for v in b.title_figures)
    return not a_in_b and not b_in_a


def _declared(a: Features, b: Features) -> str | None:
    if a.identity & b.identity:
        return "same-article"
    if a.declared & b.identity or b.declared & a.identity:
        return "attribution"
    if a.declared & b.declared:
        return "same-original"
    return None


def jaccard(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> float:
    if a is None or b is None:
        return 0.0
    if len(a) != len(b):
        raise ValueError("MinHash signatures of different lengths")
    return sum(map(eq, a, b)) / len(a)


_LOW_BITS: dict[int, int] = {}


def _lane_jaccard(a: Features, b: Features) -> float:
    """``jaccard(a.minhash, b.minhash)`` on the packed signatures: XOR, fold each 32-bit lane onto
    its lowest bit (bits never cross into the lane below), count the lanes left non-zero."""
    if a.minhash is None or b.minhash is None:
        return 0.0
    n = len(a.minhash)
    if n != len(b.minhash):
        raise ValueError("MinHash signatures of different lengths")
    z = a.minhash_lanes ^ b.minhash_lanes
    z |= z >> 16
    z |= z >> 8
    z |= z >> 4
    z |= z >> 2
    z |= z >> 1
    mask = _LOW_BITS.get(n)
    if mask is None:
        mask = _LOW_BITS[n] = sum(1 << (32 * i) for i in range(n))
    return (n - (z & mask).bit_count()) / n


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
    shared_keys: list[tuple[str, float]] = []
    fig_cov, fig_shared, fig_rare = _figure_coverage(a, b, tol, shared_keys)
    ent_cov, ent_shared, ent_rare = _entity_coverage(a, b, t.related_entity_weight, shared_keys)
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
        cite=bool(a.cites & b.identity or b.cites & a.identity),
        near_duplicate=_lane_jaccard(a, b) if a.near_family == b.near_family else 0.0,
        figures=fig_cov[0] if fig_cov else None,
        figures_max=fig_cov[1] if fig_cov else None,
        entities=ent_cov[0] if ent_cov else None,
        entities_max=ent_cov[1] if ent_cov else None,
        order=order,
        score=score,
        mass=mass,
        clash=_clash(a, b, tol),
        related=fig_rare + ent_rare,
        shared=tuple(shared_keys),
        hours=abs(a.ts - b.ts) / 3600.0,
        complete=complete,
        layout=layout,
    )


def finish(p: PairScore, a: Features, b: Features, t: Thresholds) -> PairScore:
    """``p`` (from ``compare(a, b, t, full=False)``) with the order of anchors and the exact score."""
    if p.complete:
        return p
    fig_part, ent_part = _parts(p, t)
    order = _order(a, b, t.figure_tolerance)
    return replace(
        p,
        order=order,
        score=_blend(fig_part, ent_part, order, t),
        complete=True,
        layout=paragraph_alignment(a, b, t.figure_tolerance),
    )

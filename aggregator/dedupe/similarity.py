"""How alike two documents are, signal by signal (pure)."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
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
    bvals = sorted(b.figures)
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


def _find_close(sorted_vals: list[tuple[float, float]], v: float, tol: float) -> int | None:
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
    for key, w in a.entities.items():
        other = b.entities.get(key) or b.names.get(key)
        if other:
            m = min(w, other)
            shared += m
            shared_keys.append(("e:" + key, m))
            if m >= rare_min:
                rare += m
            if key in b.names:
                b_names_shared += other
    for key, w in a.names.items():
        other = b.entities.get(key) or b.names.get(key)
        if other:
            m = min(w, other)
            shared += m
            shared_keys.append(("e:" + key, m))
            if m >= rare_min:
                rare += m
            a_names_shared += w
            if key in b.names:
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


def _clash(a: Features, b: Features, tol: float) -> bool:
    """Both headlines carry figures, and neither headline's figures appear anywhere in the other."""
    if not a.title_figures or not b.title_figures:
        return False
    bvals = sorted(b.figures)
    avals = sorted(a.figures)
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
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def compare(a: Features, b: Features, t: Thresholds) -> PairScore:
    """Every signal between ``a`` and ``b``; ``score`` blends the content ones (0–1)."""
    tol = t.figure_tolerance
    shared_keys: list[tuple[str, float]] = []
    fig_cov, fig_shared, fig_rare = _figure_coverage(a, b, tol, shared_keys)
    ent_cov, ent_shared, ent_rare = _entity_coverage(a, b, t.related_entity_weight, shared_keys)
    figs = fig_cov[0] if fig_cov else None
    ents = ent_cov[0] if ent_cov else None
    mass = fig_shared + ent_shared
    # Order only matters for pairs that could merge at all (it is the costly part).
    order = _order(a, b, tol) if mass >= t.min_mass_with_image else None
    fig_part = (1 - t.containment) * fig_cov[0] + t.containment * fig_cov[1] if fig_cov else None
    ent_part = (ent_cov[0] + ent_cov[1]) / 2 if ent_cov else None
    parts = [(fig_part, t.figure_share), (ent_part, t.entity_share), (order, t.order_share)]
    total = sum(w for v, w in parts if v is not None)
    score = sum(v * w for v, w in parts if v is not None) / total if total else 0.0
    near = jaccard(a.minhash, b.minhash) if a.near_family == b.near_family else 0.0
    return PairScore(
        declared=_declared(a, b),
        image=bool(a.image and a.image == b.image),
        cite=bool(a.cites & b.identity or b.cites & a.identity),
        near_duplicate=near,
        figures=figs,
        figures_max=fig_cov[1] if fig_cov else None,
        entities=ents,
        entities_max=ent_cov[1] if ent_cov else None,
        order=order,
        score=score,
        mass=mass,
        clash=_clash(a, b, tol),
        related=fig_rare + ent_rare,
        shared=tuple(shared_keys),
        hours=abs(a.ts - b.ts) / 3600.0,
    )

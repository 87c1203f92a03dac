"""How alike two documents are: the evidence of one pair, signal by signal.

``PairScore`` is what the compiled pair scoring (``_pairs.pyx``) returns; its rules are written
out in ``policy.Thresholds`` and ``cluster``. ``tests/dedupe_oracle/similarity.py`` computes
the same scores in plain Python, for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    hours: float
    complete: bool = True
    """False: ``order`` is not computed yet and ``score`` is only an upper bound (``_pairs.finish`` completes it)."""
    layout: tuple[float, float] | None = None
    """(how well the paragraphs match when kept in order, the share of the best unordered match
    that order keeps), from ``_pairs.paragraph_alignment``; None until ``_pairs.finish`` (or no paragraphs)."""

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

"""Dedupe's compiled kernels, required: the blocking index (``_index.pyx``), pair scoring
(``_pairs.pyx``) and the MinHash signature features carry (``_minhash.pyx``), built by the package build (``setup.py``; ``make venv`` or
``pip install --no-build-isolation -e .``). Without them importing dedupe fails at once with
``KernelsNotBuilt``, one line saying how to build: there is no slower fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aggregator.dedupe.policy import Thresholds
from aggregator.dedupe.similarity import PairScore
from core.errors import BabelwireError

if TYPE_CHECKING:  # features imports this module (its MinHash is a kernel)
    from aggregator.dedupe.features import Features

BUILD = "run `make venv` (or `.venv/bin/pip install --no-build-isolation -e .`)"


class KernelsNotBuilt(BabelwireError, ImportError):
    """``aggregator.dedupe._index``, ``_pairs`` or ``_minhash`` is not compiled (or not for this interpreter)."""


try:
    from aggregator.dedupe import _index, _minhash, _pairs
except ImportError as e:
    raise KernelsNotBuilt(f"dedupe's compiled kernels are not built ({e}): {BUILD}") from None

Index = _index.Index
minhash_kernel = _minhash


class PairKernel:
    """Pair scoring for a clusterer: each item it holds is copied once into native ``Anchors``
    (``prepare``; keys interned to ints), then ``compare`` (without the costly order of anchors),
    ``finish`` (with it, without the paragraph layout) and ``with_layout`` run on those."""

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self._interner: dict[str, int] = {}
        self._anchors: dict[int, _pairs.Anchors] = {}

    def prepare(self, f: Features) -> None:
        if f.doc.id not in self._anchors:
            self._anchors[f.doc.id] = _pairs.Anchors(f, self._interner)

    def forget(self, doc_id: int) -> None:
        """``doc_id`` will not be compared again."""
        self._anchors.pop(doc_id, None)

    def compare(self, a: Features, b: Features) -> PairScore:
        anchors = self._anchors
        return _pairs.compare(anchors[a.doc.id], anchors[b.doc.id], self.t, False)

    def compare_many(
        self, a: Features, doc_ids: list[int], docs: Mapping[int, Features]
    ) -> dict[int, PairScore]:
        """``compare(a, docs[d])`` for each of ``doc_ids`` (all prepared)."""
        anchors = self._anchors
        return _pairs.compare_many(anchors[a.doc.id], anchors, doc_ids, self.t)

    def finish(self, p: PairScore, a: Features, b: Features) -> PairScore:
        anchors = self._anchors
        return _pairs.finish(p, anchors[a.doc.id], anchors[b.doc.id], self.t, False)

    def with_layout(self, p: PairScore, a: Features, b: Features) -> PairScore:
        anchors = self._anchors
        return _pairs.with_layout(p, anchors[a.doc.id], anchors[b.doc.id], self.t)

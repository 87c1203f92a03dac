"""Dedupe's compiled kernels (``aggregator/dedupe/_index.pyx``, ``_pairs.pyx``) in plain Python:
the oracle the tests check them against. Never imported by ``aggregator``.

- ``index.PyIndex``: the blocking index, in Python and numpy;
- ``similarity``: pair scoring, function by function, and ``PairKernel`` over it;
- ``OracleClusterer``: ``cluster.Clusterer`` running on those two instead of the kernels.
"""

from __future__ import annotations

from aggregator.dedupe.cluster import Clusterer
from aggregator.dedupe.policy import DEFAULT, Thresholds
from tests.dedupe_oracle.index import PyIndex
from tests.dedupe_oracle.similarity import PairKernel


class OracleClusterer(Clusterer):
    """The same clustering rules over the oracle's index and pair scoring."""

    def __init__(self, thresholds: Thresholds = DEFAULT) -> None:
        super().__init__(thresholds)
        self._index = PyIndex()  # type: ignore[assignment]
        self._pairs = PairKernel(thresholds)  # type: ignore[assignment]

"""Types of the compiled blocking index (``_index.pyx``; its oracle: ``tests/dedupe_oracle/index.py``)."""

from aggregator.dedupe.policy import Thresholds

class Index:
    base: int
    next_ord: int
    in_order: bool
    def place(self, doc_id: int, ts: float, figure_mass: float, story: int, keys: tuple[str, ...]) -> int: ...
    def remove(self, o: int, keys: tuple[str, ...]) -> None: ...
    def candidates(
        self,
        query: tuple[tuple[str, float, int], ...],
        fts: float,
        window: float,
        figure_mass: float,
        light_figures: float,
        t: Thresholds,
    ) -> tuple[list[int], list[tuple[int, float, int]]]: ...

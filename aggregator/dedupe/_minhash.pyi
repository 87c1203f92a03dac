"""Types of the compiled MinHash (``_minhash.pyx``; its oracle: ``tests/dedupe_oracle/minhash.py``)."""

from collections.abc import Iterable

import numpy as np

def minhash_words(words: list[str], a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None: ...
def minhash_strings(shingles: Iterable[str], a: np.ndarray, b: np.ndarray) -> tuple[int, ...]: ...

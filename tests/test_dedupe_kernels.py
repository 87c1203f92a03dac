"""The compiled kernels (``_index`` blocking, ``_pairs`` pair scoring) cluster as the plain-Python
oracle (``tests/dedupe_oracle``) does: the same stories, kinds, matched items and related links,
in every path (time order, out of order, seeded and closed stories, other thresholds); scores
equal up to rounding. And without the kernels dedupe does not start."""

from __future__ import annotations

import importlib.util
import math
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aggregator.dedupe.cluster import Assignment, Clusterer, RelatedLink, collector_paused
from aggregator.dedupe.corpus import load_corpus
from aggregator.dedupe.features import Extractor, Features
from aggregator.dedupe.policy import DEFAULT, Thresholds
from tests.dedupe_oracle import OracleClusterer

ROOT = Path(__file__).resolve().parents[1]
CORPORA = [ROOT / "eval" / "tune", ROOT / "eval" / "test"]
SCORE = {"rel_tol": 1e-9, "abs_tol": 1e-12}
"""Unrounded scores: the kernels may add in another order than the oracle."""
ROUNDED = 1e-3 + 1e-9
"""Scores rounded to three places (signals, related links) may land one step apart."""


def _bench_expand() -> Any:
    spec = importlib.util.spec_from_file_location("bench_dedupe", ROOT / "bench" / "bench_dedupe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expand


@pytest.fixture(scope="module")
def corpus_features() -> list[Features]:
    """Every version of both eval halves, blind and with hints."""
    docs = [d.doc for c in CORPORA for hints in (False, True) for d in load_corpus(c, hints=hints)]
    docs = [replace(d, id=i + 1) for i, d in enumerate(docs)]
    return [Extractor().features(d) for d in docs]


@pytest.fixture(scope="module")
def busy_features() -> list[Features]:
    """3,000 items of the bench's busy stream: look-alike copies of the corpus (other figures, names, days), ~700 a day."""
    base = [d for c in CORPORA for d in load_corpus(c)]
    docs, _, _ = _bench_expand()(base, 3000)
    return list(Extractor().features_many(docs, workers=2))


def _run(
    c: Clusterer, features: list[Features], seed_every: int = 0
) -> tuple[list[Assignment], dict[tuple[int, int], RelatedLink], list[tuple[int, int]]]:
    """Cluster ``features``; every ``seed_every``-th item is seeded into a story of its own
    (closed every other time), as ``run_dedupe`` seeds stored items."""
    out: list[Assignment] = []
    with collector_paused():
        for i, f in enumerate(features):
            if seed_every and i % seed_every == 0:
                c.seed(f, c.new_story_key(), closed=(i // seed_every) % 2 == 1)
            else:
                out.append(c.add(f))
    return out, dict(c.related), list(c.kept_related())


def _same_signals(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got.keys() != want.keys():
        return False
    return all(
        math.isclose(g, w, abs_tol=ROUNDED) if isinstance(w, float) else g == w
        for g, w in ((got[k], want[k]) for k in want)
    )


def _same(features: list[Features], t: Thresholds = DEFAULT, seed_every: int = 0) -> Counter[str]:
    """Assert that both cluster ``features`` alike; the kinds of the assignments made."""
    native = _run(Clusterer(t), features, seed_every)
    oracle = _run(OracleClusterer(t), features, seed_every)
    decisions = [
        [(a.doc_id, a.story, a.kind, a.matched_doc, a.threshold) for a in r[0]] for r in (native, oracle)
    ]
    assert decisions[0] == decisions[1]
    for got, want in zip(native[0], oracle[0], strict=True):
        assert math.isclose(got.score, want.score, **SCORE), (got, want)
        assert _same_signals(got.signals, want.signals), (got, want)
    assert list(native[1]) == list(oracle[1]), "other related pairs, or made in another order"
    for pair, link in native[1].items():
        assert link.items == oracle[1][pair].items
        assert math.isclose(link.score, oracle[1][pair].score, abs_tol=ROUNDED)
    assert native[2] == oracle[2]
    return Counter(a.kind for a in native[0])


def test_kernels_cluster_the_corpus_as_the_oracle(corpus_features: list[Features]) -> None:
    kinds = _same(corpus_features)
    assert kinds["merge"] > 100  # the comparison covers real merges, not only new stories


def test_kernels_cluster_a_busy_stream_as_the_oracle(busy_features: list[Features]) -> None:
    assert _same(busy_features)["merge"] > 500


def test_kernels_cluster_out_of_order_as_the_oracle(corpus_features: list[Features]) -> None:
    shuffled = list(corpus_features)
    random.Random(4).shuffle(shuffled)
    _same(shuffled)


def test_kernels_seed_closed_stories_as_the_oracle(busy_features: list[Features]) -> None:
    _same(busy_features[:1500], seed_every=7)


def test_kernels_with_other_thresholds_as_the_oracle(busy_features: list[Features]) -> None:
    t = Thresholds(max_postings=12, max_figure_postings=20, max_candidates=3, rare_postings=5, related=0.0)
    _same(busy_features[:1500], t=t)
    loose = Thresholds(min_candidate_hits=0.0, window_hours=6.0, related_hours=3.0, figure_tolerance=0.05)
    _same(busy_features[:1500], t=loose)


def test_without_the_kernels_dedupe_does_not_start() -> None:
    """A missing build is an import error with one line saying how to build, never a slow path."""
    code = (
        "import sys; sys.modules['aggregator.dedupe._pairs'] = None\n"
        "from core.errors import BabelwireError\n"
        "try:\n"
        "    import aggregator.dedupe.run\n"
        "except BabelwireError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    message = res.stdout.strip()
    assert "\n" not in message
    assert message.startswith("dedupe's compiled kernels are not built") and "make venv" in message

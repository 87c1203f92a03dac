"""The native kernels (Cython: ``_index`` blocking, ``_pairs`` pair scoring) cluster exactly as the
pure-Python reference does: same stories, same reasons, same related links, in every path
(time order, out of order, seeded stories, closed stories, editors' merges)."""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

from aggregator.dedupe.blocking import PyIndex, make_index
from aggregator.dedupe.cluster import Assignment, Clusterer, collector_paused
from aggregator.dedupe.corpus import load_corpus
from aggregator.dedupe.features import Extractor, Features
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.similarity import NativePairKernel, PairKernel, pair_kernel

ROOT = Path(__file__).resolve().parents[1]
CORPORA = [ROOT / "eval" / "tune", ROOT / "eval" / "test"]


def _bench_expand() -> object:
    spec = importlib.util.spec_from_file_location("bench_dedupe", ROOT / "bench" / "bench_dedupe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expand


@pytest.fixture(scope="module")
def corpus_features() -> list[Features]:
    """Every version of both halves of the labelled corpus, blind and with hints."""
    docs = [d.doc for c in CORPORA for hints in (False, True) for d in load_corpus(c, hints=hints)]
    docs = [replace(d, id=i + 1) for i, d in enumerate(docs)]
    return [Extractor().features(d) for d in docs]


@pytest.fixture(scope="module")
def busy_features() -> list[Features]:
    """3,000 items of the bench's busy stream: copies of the corpus with other digits, ~700 a day."""
    base = [d for c in CORPORA for d in load_corpus(c)]
    docs, _ = _bench_expand()(base, 3000)  # type: ignore[operator]
    return list(Extractor().features_many(docs, workers=2))


def test_the_native_kernels_are_built() -> None:
    """``make`` builds them; a missing build must fail here, not silently fall back."""
    assert not isinstance(make_index(), PyIndex), "run `make native` (tools/build_native.py)"
    assert isinstance(pair_kernel(Thresholds()), NativePairKernel), "run `make native`"
    assert type(pair_kernel(Thresholds(), native=False)) is PairKernel
    assert isinstance(make_index(native=False), PyIndex)


def _run(
    features: Iterable[Features], native: bool, t: Thresholds = DEFAULT, seed_every: int = 0
) -> tuple[list[Assignment], dict, dict]:
    """Cluster ``features``; every ``seed_every``-th item is seeded into a story of its own
    (closed every other time), as ``run_dedupe`` seeds stored items; an editor merges two stories
    halfway."""
    c = Clusterer(t, native=native)
    out: list[Assignment] = []
    items = list(features)
    with collector_paused():
        for i, f in enumerate(items):
            if seed_every and i % seed_every == 0:
                c.seed(f, c.new_story_key(), closed=(i // seed_every) % 2 == 1)
                continue
            out.append(c.add(f))
            if i == len(items) // 2 and len(out) > 2:
                c.merge_stories(out[-1].story, out[-3].story)
    return out, dict(c.related), c.kept_related()


def _same(features: list[Features], **kw: object) -> int:
    python = _run(features, native=False, **kw)  # type: ignore[arg-type]
    native = _run(features, native=True, **kw)  # type: ignore[arg-type]
    assert native[0] == python[0]
    assert native[1] == python[1]
    assert list(native[1]) == list(python[1]), "links were made in another order"
    assert native[2] == python[2]
    return sum(a.kind == "merge" for a in python[0])


def test_native_clusters_the_corpus_as_python_does(corpus_features: list[Features]) -> None:
    merges = _same(corpus_features)
    assert merges > 100  # the comparison covers real merges, not only new stories


def test_native_clusters_a_busy_stream_as_python_does(busy_features: list[Features]) -> None:
    merges = _same(busy_features)
    assert merges > 500


def test_native_clusters_out_of_order_as_python_does(corpus_features: list[Features]) -> None:
    shuffled = list(corpus_features)
    random.Random(4).shuffle(shuffled)
    _same(shuffled)


def test_native_seeds_closed_stories_and_editor_merges_as_python(busy_features: list[Features]) -> None:
    _same(busy_features[:1500], seed_every=7)


def test_native_with_other_thresholds_as_python(busy_features: list[Features]) -> None:
    t = Thresholds(max_postings=12, max_figure_postings=20, max_candidates=3, rare_postings=5, related=0.0)
    _same(busy_features[:1500], t=t)
    loose = Thresholds(min_candidate_hits=0.0, window_hours=6.0, related_hours=3.0, figure_tolerance=0.05)
    _same(busy_features[:1500], t=loose)


def test_a_run_without_the_native_kernels_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    from aggregator.dedupe import run

    run._warned_python = False
    with caplog.at_level("WARNING", logger="aggregator.dedupe.run"):
        run._warn_if_python(Clusterer(native=True))
        assert not caplog.records
        run._warn_if_python(Clusterer(native=False))
        run._warn_if_python(Clusterer(native=False))
    assert [r.getMessage() for r in caplog.records] == [
        "dedupe: native kernels not built (run `make native`); clustering runs in Python, several times slower"
    ]
    assert Clusterer(native=True).native and not Clusterer(native=False).native

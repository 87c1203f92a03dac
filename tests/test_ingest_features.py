"""Dedupe features made during the poll round, in the parse processes: a dedupe run after the round
finds every item's features stored under the key it computes itself, extracts nothing, and the
stored features are the ones it would have extracted."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.dedupe.codec import decode, dedupe_key
from aggregator.dedupe.features import MINHASH_SEED, DedupeDoc, Extractor, Features, affine32_permutations
from aggregator.dedupe.ingest import article_key_fn
from aggregator.dedupe.policy import DEFAULT
from aggregator.dedupe.run import _doc, prepare_features, run_dedupe
from aggregator.models import Item, Source
from aggregator.poll import ParsePool, PollReport, poll_round
from aggregator.registry import add_sources
from aggregator.settings import Settings
from sources.opml import SourceSpec
from tests.feedserver import FeedServer, Response

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "e2e"
FEEDS = {
    "/coindesk/en.xml": ("coindesk", "en", "coindesk-en.xml", "application/rss+xml"),
    "/gate/pt-PT.xml": ("gate", "pt-PT", "gate-pt-PT.xml", "application/atom+xml"),
    "/coinpost/ja.xml": ("coinpost", "ja", "coinpost-ja.xml", "application/rss+xml; charset=utf-8"),
}


class CountingExtractor(Extractor):
    """The default extractor (same key), counting what it extracts."""

    def __init__(self) -> None:
        super().__init__(article_key=article_key_fn())
        self.extracted = 0

    def features(self, doc: DedupeDoc) -> Features:
        self.extracted += 1
        return super().features(doc)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as s:
        for path, (_outlet, _locale, name, ctype) in FEEDS.items():
            s.routes[path] = Response(body=(FIXTURES / name).read_bytes(), headers={"Content-Type": ctype})
        yield s


def _subscribe(engine: sa.Engine, server: FeedServer) -> None:
    add_sources(
        engine,
        [
            SourceSpec(url=server.url(path), outlet=outlet, locale=locale, title=None)
            for path, (outlet, locale, _name, _ctype) in FEEDS.items()
        ],
    )


def _poll(engine: sa.Engine, settings: Settings, workers: int, *, all_sources: bool = False) -> PollReport:
    pool = ParsePool(workers)
    try:
        return asyncio.run(poll_round(engine, settings, executor=pool, all_sources=all_sources))
    finally:
        pool.shutdown()


def _items_with_outlets(engine: sa.Engine) -> list[tuple[Item, str]]:
    with Session(engine) as session:
        rows = session.exec(select(Item, Source.outlet_id).join(Source).order_by(Item.id)).all()  # type: ignore[arg-type]
        return [(item, outlet) for item, outlet in rows]


def test_the_round_stores_the_features_a_dedupe_run_would_extract(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    _subscribe(engine, server)
    # Two workers, whatever the machine: the features are made in the pool's processes.
    report = _poll(engine, settings, 2)
    assert report.inserted == 9 and report.errors == 0
    ex = CountingExtractor()
    items = _items_with_outlets(engine)
    assert len(items) == 9
    for item, outlet in items:
        doc = _doc(item, outlet)
        assert item.dedupe_key == dedupe_key(ex, doc), item.title
        stored = decode(item.dedupe_features, doc)
        assert stored is not None and stored == ex.features(doc), item.title
    ex.extracted = 0
    assert prepare_features(engine, lambda: ex, DEFAULT) == {}
    dedupe = run_dedupe(engine, extractor=ex)
    assert ex.extracted == 0  # the run only clustered
    assert dedupe.items == 0 or dedupe.new_stories > 0
    assert all(item.story_id is not None for item, _ in _items_with_outlets(engine))


def test_an_updated_entry_gets_fresh_features(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    _subscribe(engine, server)
    _poll(engine, settings, 2)
    run_dedupe(engine)
    body = (
        (FIXTURES / "coindesk-en.xml")
        .read_bytes()
        .replace(b"the most since January", b"the most since December")
    )
    server.routes["/coindesk/en.xml"] = Response(body=body, headers={"Content-Type": "application/rss+xml"})
    again = _poll(engine, settings, 2, all_sources=True)
    assert again.updated == 1
    ex = CountingExtractor()
    for item, outlet in _items_with_outlets(engine):
        assert item.dedupe_key == dedupe_key(ex, _doc(item, outlet)), item.title
    assert prepare_features(engine, lambda: ex, DEFAULT) == {}
    assert ex.extracted == 0


def test_with_one_worker_the_round_leaves_features_to_dedupe(
    engine: sa.Engine, settings: Settings, server: FeedServer
) -> None:
    _subscribe(engine, server)
    _poll(engine, settings, 1)
    assert all(item.dedupe_key is None for item, _ in _items_with_outlets(engine))
    ex = CountingExtractor()
    run_dedupe(engine, extractor=ex)
    assert ex.extracted == 9
    assert all(item.story_id is not None for item, _ in _items_with_outlets(engine))


@pytest.mark.parametrize("num_perm", [DEFAULT.minhash_perm, 64, 256])
def test_minhash_permutations_are_datasketchs(num_perm: int) -> None:
    """features.py draws datasketch's affine32 permutations itself (datasketch imports scipy);
    the MinHash signatures dedupe compares stay datasketch's."""
    from datasketch import MinHash

    a, b = affine32_permutations(num_perm, seed=MINHASH_SEED)
    expected = MinHash(num_perm=num_perm, seed=MINHASH_SEED, scheme="affine32").permutations
    assert np.array_equal(np.asarray(expected[0], dtype=np.uint32), a)
    assert np.array_equal(np.asarray(expected[1], dtype=np.uint32), b)
    assert a.dtype == b.dtype == np.uint32


def test_extraction_does_not_import_datasketch() -> None:
    code = (
        "import sys\n"
        "from aggregator.dedupe.ingest import default_extractor\n"
        "default_extractor()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('datasketch', 'scipy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_a_failing_feature_job_costs_only_the_cache(
    engine: sa.Engine,
    settings: Settings,
    server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Extraction that raises (a bug, a worker lost) leaves the round whole: every item stored, no
    feed marked failed, and the dedupe run extracts what the round could not."""
    import aggregator.poll as poll

    calls: list[int] = []

    def broken(items: list[dict[str, object]]) -> list[dict[str, object]]:
        calls.append(len(items))
        raise ValueError("extraction bug")

    monkeypatch.setattr(poll, "extract_features", broken)
    _subscribe(engine, server)
    with ThreadPoolExecutor(2) as threads:  # runs the job in this process, where the patch applies
        report = asyncio.run(poll_round(engine, settings, executor=threads))
    assert calls and sum(calls) == 9
    assert report.inserted == 9 and report.errors == 0
    warned = [r.getMessage() for r in caplog.records if r.name == "aggregator.poll"]
    assert len(warned) == len(calls)
    assert all("not stored: ValueError: extraction bug" in w and "\n" not in w for w in warned)
    assert all(item.dedupe_key is None for item, _ in _items_with_outlets(engine))
    ex = CountingExtractor()
    run_dedupe(engine, extractor=ex)
    assert ex.extracted == 9
    assert all(item.story_id is not None for item, _ in _items_with_outlets(engine))

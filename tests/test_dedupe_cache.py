"""Stored dedupe features (``Item.dedupe_features`` / ``dedupe_key``): codec, key, runs, migration."""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import subprocess
import sys
import types
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from aggregator.db import make_engine
from aggregator.dedupe import codec
from aggregator.dedupe.codec import decode, dedupe_key, encode
from aggregator.dedupe.corpus import load_corpus
from aggregator.dedupe.features import DedupeDoc, Extractor, Features
from aggregator.dedupe.lexicon import Lexicon
from aggregator.dedupe.policy import Thresholds
from aggregator.dedupe.run import _article_key_fn, _doc, run_dedupe
from aggregator.migrate import alembic_config, current_revision, head_revision, upgrade
from aggregator.models import Item, Source
from aggregator.settings import Settings
from sources.catalogue import OUTLETS_DIR, ArticleKeys
from tests.test_catalogue import _catalogue_dir
from tests.test_dedupe_run import ARTICLES, T0, add_items

ROOT = Path(__file__).resolve().parents[1]
EN, PT, JA, OTHER = list(ARTICLES)


class CountingExtractor(Extractor):
    """The production extractor, recording the id of every document it extracts."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(article_key=_article_key_fn(), **kw)
        self.calls: list[int] = []

    def features(self, doc: DedupeDoc) -> Features:
        self.calls.append(doc.id)
        return super().features(doc)


EXTRACTOR = Extractor(outlet_names={"coindesk": "coindesk", "CoinDesk": "coindesk"})


def sample_docs() -> list[DedupeDoc]:
    """The labelled corpora (every script), the run tests' articles, and a text too short for a MinHash."""
    docs = [d.doc for corpus in (ROOT / "eval" / "test", ROOT / "eval" / "tune") for d in load_corpus(corpus)]
    for n, (link, (outlet, locale, minutes, title, body, links)) in enumerate(ARTICLES.items()):
        docs.append(
            DedupeDoc(
                id=1000 + n,
                locale=locale,
                outlet=outlet,
                url=link,
                title=title,
                text=title + "\n" + body,
                published_at=T0 + timedelta(minutes=minutes),
                links=links,
                tickers=("BTC",),
            )
        )
    docs.append(
        DedupeDoc(
            id=2000,
            locale="en",
            outlet="x",
            url="https://x.example/1",
            title="Hi",
            text="Hi",
            published_at=T0,
        )
    )
    return docs


def test_decoded_features_equal_the_extracted_ones_field_by_field() -> None:
    docs = sample_docs()
    assert len({d.locale for d in docs}) >= 8
    assert any(EXTRACTOR.features(d).minhash is None for d in docs)
    for doc in docs:
        f = EXTRACTOR.features(doc)
        back = decode(encode(f), doc)
        assert back is not None
        for field in dataclasses.fields(Features):
            got, want = getattr(back, field.name), getattr(f, field.name)
            assert got == want, field.name
            assert type(got) is type(want), field.name
        assert back == f
        assert back.doc is doc


def test_features_holding_other_containers_are_stored_as_plain_ones() -> None:
    """marshal takes only exact builtin types: a Mapping that is not a dict inside a field is
    stored as the plain dict (the slower way), and decodes equal."""
    doc = sample_docs()[0]
    f = EXTRACTOR.features(doc)
    assert f.entities
    wrapped = dataclasses.replace(f, entities=types.MappingProxyType(dict(f.entities)))
    with pytest.raises(ValueError):
        marshal.dumps(wrapped.entities)  # type: ignore[arg-type]
    back = decode(encode(wrapped), doc)
    assert back is not None and type(back.entities) is dict and back.entities == dict(f.entities)
    assert back == f


def test_damaged_or_foreign_blobs_decode_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = sample_docs()[0]
    blob = encode(EXTRACTOR.features(doc))
    assert decode(blob, doc) is not None
    assert decode(memoryview(blob), doc) is not None
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    bad = [b"", None, b"BWF1", blob[:-3], bytes(flipped), b"x" + blob[1:], bytes(64)]
    for damaged in bad:
        assert decode(damaged, doc) is None
    # Payloads behind a valid header and checksum that are not a Features tuple.
    header = blob[: codec._HEADER.size - 4]  # all but the payload checksum
    nones = tuple([None] * len(codec._STORED))
    shapes = (marshal.dumps((1, 2)), marshal.dumps(nones), marshal.dumps([]))
    for payload in (*(zlib.compress(p) for p in shapes), *shapes, b"\xff"):
        assert decode(header + zlib.crc32(payload).to_bytes(4, "big") + payload, doc) is None
    monkeypatch.setattr(codec, "FEATURES_VERSION", codec.FEATURES_VERSION + 1)
    assert decode(blob, doc) is None
    monkeypatch.undo()
    monkeypatch.setattr(codec, "_PYTHON", (3, 99))
    assert decode(blob, doc) is None
    monkeypatch.undo()
    monkeypatch.setattr(codec, "_FIELDS_CRC", codec._FIELDS_CRC ^ 1)
    assert decode(blob, doc) is None


CHANGES: list[dict[str, Any]] = [
    {"text": "Spot bitcoin ETFs pull in $1.3 billion"},
    {"title": "Another title"},
    {"url": "https://coindesk.example/en/a2"},
    {"guid": "urn:other"},
    {"image": "https://img.example/1.png"},
    {"locale": "pt-BR"},
    {"language": "es"},
    {"tickers": ("BTC", "ETH")},
    {"links": {"original": "https://gate.example/pt/a1"}},
    {"published_at": T0 + timedelta(seconds=1)},
    {"outlet": "gate"},
    {"id": 1},
]


@pytest.mark.parametrize("change", CHANGES, ids=[next(iter(c)) for c in CHANGES])
def test_every_input_of_extraction_changes_the_key(change: dict[str, Any]) -> None:
    doc = sample_docs()[-5]
    assert dedupe_key(EXTRACTOR, doc) == dedupe_key(EXTRACTOR, dataclasses.replace(doc))
    assert dedupe_key(EXTRACTOR, doc) != dedupe_key(EXTRACTOR, dataclasses.replace(doc, **change))


def test_the_extractor_configuration_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = sample_docs()[-5]
    base = Extractor(outlet_names={"CoinDesk": "coindesk"})
    key = dedupe_key(base, doc)
    assert dedupe_key(Extractor(outlet_names={"CoinDesk": "coindesk"}), doc) == key
    small = Lexicon([("bitcoin", "asset", 0.3, ["Bitcoin", "BTC"])])
    others = [
        Extractor(outlet_names={"CoinDesk": "coindesk", "Gate": "gate"}),
        Extractor(outlet_names={"CoinDesk": "coindesk"}, lexicon=small),
        Extractor(outlet_names={"CoinDesk": "coindesk"}, thresholds=Thresholds(figure_tolerance=0.05)),
        Extractor(outlet_names={"CoinDesk": "coindesk"}, article_key=_article_key_fn()),
    ]
    keys = {dedupe_key(ex, doc) for ex in others}
    assert len(keys) == len(others) and key not in keys
    monkeypatch.setattr(codec, "FEATURES_VERSION", codec.FEATURES_VERSION + 1)
    assert dedupe_key(Extractor(outlet_names={"CoinDesk": "coindesk"}), doc) != key


def test_an_edited_article_id_pattern_changes_the_key(tmp_path: Path) -> None:
    """Features hold the article key the outlet's pattern found: a new pattern must re-extract."""
    doc = dataclasses.replace(
        sample_docs()[-5], outlet="gate", url="https://www.gate.com/pt/news/detail/41872"
    )
    text = (OUTLETS_DIR / "gate.toml").read_text(encoding="utf-8")
    assert "article_id_pattern" in text
    lines = [ln for ln in text.splitlines() if not ln.startswith("article_id_pattern")]
    edited_text = "\n".join(["article_id_pattern = '/news/detail/(\\d{3})'", *lines]) + "\n"
    for name in ("installed", "edited"):
        (tmp_path / name).mkdir()
    installed = _catalogue_dir(tmp_path / "installed", "gate", text)
    edited = _catalogue_dir(tmp_path / "edited", "gate", edited_text)

    def key(rule: ArticleKeys) -> str:
        return dedupe_key(Extractor(outlet_names={"Gate": "gate"}, article_key=rule), doc)

    assert ArticleKeys(installed)("gate", doc.url) == "gate:41872"
    assert ArticleKeys(edited)("gate", doc.url) == "gate:418"
    assert key(ArticleKeys(installed)) == key(ArticleKeys(installed)) == key(ArticleKeys(OUTLETS_DIR))
    assert key(ArticleKeys(edited)) != key(ArticleKeys(installed))


KEY_SCRIPT = """
from datetime import UTC, datetime
from aggregator.dedupe.codec import dedupe_key
from aggregator.dedupe.features import DedupeDoc, Extractor
doc = DedupeDoc(id=7, locale="zh-TW", outlet="gate", url="https://gate.example/7", title="比特幣",
                text="比特幣 ETF 流入 12 億美元", published_at=datetime(2025, 1, 2, tzinfo=UTC),
                links={"b": 1, "a": [2]}, tickers=("BTC",))
print(dedupe_key(Extractor(), doc))
"""


def test_the_key_is_the_same_in_every_process() -> None:
    """Each poll round is a new process with its own string hash seed: sets must not leak order."""
    keys = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", KEY_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        keys.add(out.stdout.strip())
    assert len(keys) == 1 and len(keys.pop()) == 64


@pytest.fixture
def other_engine(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A second fresh migrated database on the same backend as ``engine``."""
    server = None
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path}/other.sqlite"
    else:
        server = request.getfixturevalue("pg_server")
        url = server.create_database()
    eng = make_engine(Settings(database_url=url, allow_private_feeds=True))
    upgrade(eng)
    yield eng
    eng.dispose()
    if server is not None:
        server.drop_database(url)


def item_ids(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as c:
        return {link: i for i, link in c.execute(sa.text("SELECT id, link FROM item"))}


def cached(engine: sa.Engine) -> dict[int, tuple[bytes | None, str | None]]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT id, dedupe_features, dedupe_key FROM item"))
        return {i: (bytes(blob) if blob is not None else None, key) for i, blob, key in rows}


def outcome(engine: sa.Engine) -> tuple[Any, ...]:
    """Everything dedupe decides, without the wall-clock columns."""
    queries = [
        "SELECT id, story_id FROM item",
        "SELECT id, canonical_item_id, first_published_at FROM story",
        "SELECT story_id, related_id, score, signals FROM relatedstory",
        "SELECT item_id, story_id, matched_item_id, kind, score, threshold, signals FROM mergedecision",
        "SELECT id, story_id, change FROM feedchange",
    ]
    with engine.connect() as c:
        return tuple(
            sorted(
                tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v) for v in row)
                for row in c.execute(sa.text(q))
            )
            for q in queries
        )


def null_cache(engine: sa.Engine) -> None:
    with engine.begin() as c:
        c.execute(sa.text("UPDATE item SET dedupe_features = NULL, dedupe_key = NULL"))


def test_later_runs_read_stored_features_and_decide_as_without_them(
    engine: sa.Engine, other_engine: sa.Engine
) -> None:
    results = []
    for eng, use_cache in ((engine, True), (other_engine, False)):
        calls: list[list[int]] = []
        outcomes = []
        for links in ([EN, OTHER], [PT], [JA]):
            if not use_cache:
                null_cache(eng)
            add_items(eng, links)
            ex = CountingExtractor()
            run_dedupe(eng, extractor=ex)
            calls.append(sorted(ex.calls))
            outcomes.append(outcome(eng))
            assert all(blob and key for blob, key in cached(eng).values())
        results.append((calls, outcomes, item_ids(eng)))
    (with_calls, with_cache, ids), (without_calls, without_cache, same_ids) = results
    assert ids == same_ids
    assert with_calls == [sorted([ids[EN], ids[OTHER]]), [ids[PT]], [ids[JA]]]
    assert without_calls == [
        sorted([ids[EN], ids[OTHER]]),
        sorted([ids[EN], ids[OTHER], ids[PT]]),
        sorted(ids.values()),
    ]
    assert with_cache == without_cache
    stories = dict(with_cache[-1][0])
    en, pt, ja, other = (stories[str(ids[k])] for k in (EN, PT, JA, OTHER))
    assert en == pt == ja != other


def test_changed_or_damaged_entries_are_extracted_again_and_stored(engine: sa.Engine) -> None:
    add_items(engine, [EN, OTHER])
    run_dedupe(engine, extractor=CountingExtractor())
    ids = item_ids(engine)
    before = cached(engine)
    with engine.begin() as c:
        c.execute(
            sa.text("UPDATE item SET dedupe_features = :b WHERE id = :i"), {"b": b"damaged", "i": ids[EN]}
        )
        c.execute(
            sa.text("UPDATE item SET text = text || ' Updated at noon.' WHERE id = :i"), {"i": ids[OTHER]}
        )
    add_items(engine, [PT])
    ids = item_ids(engine)
    ex = CountingExtractor()
    run_dedupe(engine, extractor=ex)
    assert sorted(ex.calls) == sorted([ids[EN], ids[OTHER], ids[PT]])
    after = cached(engine)
    assert after[ids[EN]][1] == before[ids[EN]][1]
    assert after[ids[OTHER]][1] != before[ids[OTHER]][1]
    fresh = CountingExtractor()
    with Session(engine) as s:
        for item, outlet in s.exec(select(Item, Source.outlet_id).join(Source)).all():
            doc = _doc(item, outlet)
            blob, key = after[doc.id]
            assert blob is not None and key == dedupe_key(fresh, doc)
            assert decode(blob, doc) == fresh.features(doc)
    # Stored again, so the next run extracts only what is new.
    add_items(engine, [JA])
    ex = CountingExtractor()
    run_dedupe(engine, extractor=ex)
    assert ex.calls == [item_ids(engine)[JA]]


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def item_columns(engine: sa.Engine) -> dict[str, bool]:
    return {c["name"]: c["nullable"] for c in sa.inspect(engine).get_columns("item")}


def test_migration_0004_adds_and_removes_the_columns_and_keeps_the_items(engine: sa.Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert item_columns(engine)["dedupe_features"] is True
    assert item_columns(engine)["dedupe_key"] is True
    add_items(engine, [EN, PT])
    run_dedupe(engine)  # items with stories, decisions pointing at them, stored features
    downgrade(engine, "0003")
    assert current_revision(engine) == "0003"
    assert not {"dedupe_features", "dedupe_key"} & set(item_columns(engine))
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM item WHERE story_id IS NOT NULL")).scalar() == 2
        assert c.execute(sa.text("SELECT count(*) FROM mergedecision")).scalar() == 2
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert all(blob is None and key is None for blob, key in cached(engine).values())
    add_items(engine, [JA])
    ex = CountingExtractor()
    run_dedupe(engine, extractor=ex)
    assert len(ex.calls) == 3
    assert all(blob and key for blob, key in cached(engine).values())

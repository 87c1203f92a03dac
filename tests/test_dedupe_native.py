"""The compiled pair scoring (``aggregator.dedupe._pairs``) agrees with the plain-Python oracle
(``tests/dedupe_oracle/similarity.py``), function by function, on the corpora's pairs and on
hand-made edge cases: the same decisions (declared identity, image, cite, clash, which parts are
present, the same errors) and the same scores up to rounding (the two may add in another order).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from aggregator.dedupe import _pairs as native
from aggregator.dedupe.corpus import load_corpus
from aggregator.dedupe.features import DedupeDoc, Extractor, Features
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.similarity import PairScore
from tests.dedupe_oracle import similarity as oracle

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 14, 8, 30, tzinfo=UTC)
OTHER = Thresholds(
    figure_tolerance=0.05,
    containment=0.6,
    min_mass_with_image=0.0,
    figure_share=0.4,
    entity_share=0.35,
    order_share=0.25,
)
"""Every pair takes the order path (no mass floor), wider figure matching, other shares."""
DEGENERATE = Thresholds(figure_tolerance=0.0, figure_share=0.0, entity_share=0.0, order_share=0.0)


def agree(want: Any, got: Any) -> bool:
    """Equal, floats within rounding (a NaN agrees with a NaN); ``PairScore``s field by field,
    types too (``1`` is not ``True``, a value is not None)."""
    if isinstance(want, PairScore):
        return isinstance(got, PairScore) and all(
            agree(getattr(want, f.name), getattr(got, f.name)) for f in fields(want)
        )
    if isinstance(want, tuple):
        return isinstance(got, tuple) and len(got) == len(want) and all(map(agree, want, got))
    if isinstance(want, float):
        if type(got) is not float:
            return False
        return (math.isnan(want) and math.isnan(got)) or math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-12)
    return type(got) is type(want) and got == want


def attempt(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``, or the exception it raises as a value (both sides must raise alike)."""
    try:
        return fn(*args, **kw)
    except Exception as e:
        return ("raised", type(e).__name__)


def outcomes(mod: ModuleType, a: Any, b: Any, t: Thresholds, partial: Any) -> dict[str, Any]:
    """Every pair function of ``mod`` on (a, b); ``partial`` is the oracle's
    ``compare(full=False)``, which both modules finish."""
    out = {
        "compare(full=False)": attempt(mod.compare, a, b, t, full=False),
        "compare(full=True)": attempt(mod.compare, a, b, t, full=True),
        "paragraph_alignment": attempt(mod.paragraph_alignment, a, b, t.figure_tolerance),
    }
    if isinstance(partial, PairScore):
        out["finish"] = attempt(mod.finish, partial, a, b, t)
        out["finish(layout=False)"] = attempt(mod.finish, partial, a, b, t, layout=False)
        out["with_layout"] = attempt(mod.with_layout, partial, a, b, t)
    return out


def mismatches(
    feats: Sequence[Features],
    anchors: Sequence[Any],
    pairs: Iterable[tuple[int, int]],
    thresholds: Sequence[Thresholds],
) -> tuple[list[str], list[dict[str, Any]]]:
    """(every disagreement between kernel and oracle, the oracle's outcomes per pair and thresholds)."""
    problems: list[str] = []
    seen: list[dict[str, Any]] = []
    for i, j in pairs:
        # Thresholds alternate within a pair: the kernel's cached Thresholds must follow.
        for t in thresholds:
            a, b = feats[i], feats[j]
            partial = attempt(oracle.compare, a, b, t, full=False)
            want = outcomes(oracle, a, b, t, partial)
            got = outcomes(native, anchors[i], anchors[j], t, partial)
            seen.append(want)
            for name, value in want.items():
                if not agree(value, got[name]):
                    problems.append(f"{name} of {i}->{j} with {t}: oracle {value!r}, kernel {got[name]!r}")
    return problems, seen


# ---------------------------------------------------------------- the corpora


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Features], list[str]]:
    """Features and events of every version: the tuning half with hints (shared article ids,
    attribution links, shared images) and the held-out half blind."""
    extractor = Extractor(outlet_names={})
    docs = load_corpus(ROOT / "eval" / "tune", hints=True) + load_corpus(ROOT / "eval" / "test")
    return [extractor.features(d.doc) for d in docs], [d.event for d in docs]


def corpus_pairs(events: Sequence[str]) -> list[tuple[int, int]]:
    """Every ordered pair within an event, each item with itself, and 1500 cross-event pairs
    both ways."""
    n = len(events)
    pairs = [(i, j) for i in range(n) for j in range(n) if events[i] == events[j]]
    rng = random.Random(7)
    cross = [(i, j) for i, j in (rng.sample(range(n), 2) for _ in range(3000)) if events[i] != events[j]]
    for i, j in cross[:1500]:
        pairs += [(i, j), (j, i)]
    return pairs


def test_corpus_pairs_score_the_same(corpus: tuple[list[Features], list[str]]) -> None:
    feats, events = corpus
    interner: dict[str, int] = {}
    anchors = [native.Anchors(f, interner) for f in feats]
    pairs = corpus_pairs(events)
    assert len(pairs) > 4000
    problems, seen = mismatches(feats, anchors, pairs, [DEFAULT, OTHER])
    assert not problems, f"{len(problems)} differences, first: " + "\n".join(problems[:5])

    # The pairs reach every branch: the comparison above is not vacuous.
    partial = [o["compare(full=False)"] for o in seen]
    full = [o["compare(full=True)"] for o in seen]
    assert sum(not p.complete for p in partial) > 1000
    assert sum(p.order is not None for p in full) > 1000
    assert sum(p.layout is not None for p in full) > 1000
    assert sum(p.figures is None for p in full) > 100 and sum(p.figures is not None for p in full) > 1000
    assert {p.declared for p in full} == {None, "same-article", "attribution", "same-original"}
    assert sum(p.image for p in full) > 100 and sum(p.clash for p in full) > 100
    assert sum(0 < p.near_duplicate < 1 for p in full) > 100
    # (No corpus pair lacks entity coverage or cites the other: the edge cases below do.)


# ---------------------------------------------------------------- hand-made edge cases


def made(
    n: int,
    figures: Sequence[tuple[float, float]] = (),
    title: Sequence[float] = (),
    entities: dict[str, float] | None = None,
    names: dict[str, float] | None = None,
    order: Sequence[str | float] = (),
    paragraphs: Sequence[tuple[Sequence[float], Iterable[str]]] = (),
    minhash: Sequence[int] | None = None,
    family: str = "latin",
    identity: Iterable[str] = (),
    declared: Iterable[str] = (),
    cites: Iterable[str] = (),
    image: str | None = None,
    hours: float = 0.0,
) -> Features:
    """``Features`` straight from anchors; ``order`` lists the sequence (a float is a figure)."""
    sequence = [f"#{v:.6g}" if isinstance(v, float) else v for v in order]
    values = [v if isinstance(v, float) else None for v in order]
    doc = DedupeDoc(
        id=n,
        locale="en",
        outlet="hand",
        url=f"https://hand.example/{n}",
        title="",
        text="",
        published_at=T0 + timedelta(hours=hours),
    )
    return Features(
        doc=doc,
        ts=doc.published_at.timestamp(),
        identity=frozenset(identity),
        declared=frozenset(declared),
        cites=frozenset(cites),
        image=image,
        figures=tuple(figures),
        title_figures=tuple(title),
        entities=entities or {},
        names=names or {},
        sequence=tuple(sequence),
        seq_values=tuple(values),
        seq_index={k: i for i, k in enumerate(sequence) if not k.startswith("#")},
        seq_figures=tuple(sorted((v, i) for i, v in enumerate(values) if v is not None)),
        outlets_named=frozenset(),
        paragraphs=tuple((tuple(figs), frozenset(keys)) for figs, keys in paragraphs),
        minhash=None if minhash is None else tuple(minhash),
        near_family=family,
    )


LANES = [(i * 2654435761) % 2**32 for i in range(64)]


class Colliding(str):
    """A key whose hash is every other one's: the kernel must not take equal hashes for equal keys."""

    __slots__ = ()

    def __hash__(self) -> int:
        return 42


def edge_cases() -> list[Features]:
    return [
        # Nothing at all; and nothing but an identity.
        made(1),
        made(2, identity=["https://a.example/1"], minhash=LANES),
        # Negative, zero, duplicate and huge figures; no names; headline figures.
        made(
            3,
            figures=[(0.0, 0.5), (-1200.0, 1.0), (-1200.0, 0.7), (3.5e9, 1.0), (math.inf, 0.2), (7.0, 0.15)],
            title=[0.0, 3.5e9],
            entities={"bitcoin": 1.0, "sec": 0.8},
            order=["bitcoin", -1200.0, 0.0, "sec", 3.5e9, 7.0, -1200.0],
            paragraphs=[([-1200.0, 0.0], ["bitcoin"]), ([3.5e9, 3.5e9], ["sec", "bitcoin"]), ([], [])],
            minhash=LANES,
            identity=["https://a.example/3"],
            image="https://img.example/1.jpg",
        ),
        # Figures close to those (within 2.5 % or 5 %), in another order; names, one shared.
        made(
            4,
            figures=[(3.51e9, 1.0), (-1230.0, 1.0), (-0.0, 0.3), (7.2, 0.15), (1e-300, 0.9)],
            title=[-1230.0],
            entities={"sec": 0.8, "bitcoin": 0.6},
            names={"Gensler": 0.6, "Washington": 0.4},
            order=[3.51e9, "sec", "Gensler", -1230.0, "bitcoin", -0.0, 7.2],
            paragraphs=[([3.51e9], ["sec", "Gensler"]), ([-1230.0, -0.0], ["bitcoin"]), ([7.2], [])],
            minhash=[*LANES[:40], *(x ^ 1 for x in LANES[40:])],
            identity=["https://b.example/4"],
            declared=["https://a.example/3"],
            image="https://img.example/1.jpg",
            hours=5.5,
        ),
        # An entity that is also a name (the entity's weight wins), a zero weight, another script.
        made(
            5,
            figures=[(3.5e9, 1.0), (-1200.0, 0.5)],
            title=[99.0],
            entities={"bitcoin": 0.9, "ghost": 0.0},
            names={"bitcoin": 0.4, "Gensler": 0.7, "Nakamoto": 0.6},
            order=["Gensler", 3.5e9, "bitcoin", "Nakamoto", -1200.0, "ghost"],
            paragraphs=[([], ["Gensler"]), ([3.5e9, -1200.0], ["bitcoin", "Nakamoto", "ghost"])],
            minhash=LANES,
            family="cjk",
            identity=["https://c.example/5"],
            declared=["https://orig.example/x"],
            cites=["https://b.example/4"],
            image="",
            hours=-30.0,
        ),
        # Same original declared by two; one of them cites the first item.
        made(
            6,
            figures=[(3.5e9, 1.0), (41.0, 0.5), (42.0, 0.5)],
            entities={"bitcoin": 1.0},
            names={"Nakamoto": 0.6},
            order=[41.0, 42.0, "bitcoin", 3.5e9, "Nakamoto"],
            paragraphs=[([41.0, 42.0, 3.5e9], ["bitcoin", "Nakamoto"])],
            minhash=LANES[::-1],
            family="cjk",
            identity=["https://d.example/6"],
            declared=["https://orig.example/x"],
            cites=["https://a.example/1"],
        ),
        # NaN figures; an identity shared with item 2.
        made(
            7,
            figures=[(math.nan, 1.0), (3.5e9, 1.0), (-math.inf, 0.5)],
            title=[math.nan],
            entities={"sec": 0.8},
            order=[math.nan, "sec", 3.5e9, -math.inf],
            paragraphs=[([math.nan, 3.5e9], ["sec"]), ([-math.inf], [])],
            identity=["https://a.example/1", "article:hand:7"],
        ),
        # A MinHash of another length (both modules raise), and an empty one (both divide by zero).
        made(8, figures=[(3.5e9, 1.0)], entities={"bitcoin": 1.0}, minhash=LANES[:32]),
        made(9, figures=[(3.5e9, 1.0)], entities={"bitcoin": 1.0}, minhash=[], family="other"),
        made(10, figures=[(3.5e9, 1.0)], entities={"bitcoin": 1.0}, minhash=[], family="other"),
        # A figure a hair above another (inside the order's 1e-12 slack when figures must be equal).
        made(13, entities={"bitcoin": 1.0, "sec": 1.0}, order=[0.5, "bitcoin", "sec"]),
        made(14, entities={"bitcoin": 1.0, "sec": 1.0}, order=["bitcoin", "sec", 0.5 + 5e-13]),
        # Keys whose hashes all collide: one original declared by both, nothing else shared.
        made(
            11,
            identity=[Colliding("https://e.example/11")],
            declared=[Colliding("https://e.example/orig")],
            cites=[Colliding("https://e.example/13")],
        ),
        made(
            12,
            identity=[Colliding("https://e.example/12"), Colliding("article:e:12")],
            declared=[Colliding("https://e.example/orig")],
            image="https://img.example/1.jpg",
        ),
    ]


def test_edge_cases_score_the_same() -> None:
    feats = edge_cases()
    interner: dict[str, int] = {}
    anchors = [native.Anchors(f, interner) for f in feats]
    pairs = [(i, j) for i in range(len(feats)) for j in range(len(feats))]
    problems, seen = mismatches(feats, anchors, pairs, [DEFAULT, OTHER, DEGENERATE])
    assert not problems, f"{len(problems)} differences, first: " + "\n".join(problems[:5])
    raised = {o["compare(full=True)"][1] for o in seen if isinstance(o["compare(full=True)"], tuple)}
    assert raised == {"ValueError", "ZeroDivisionError"}
    full = [o["compare(full=True)"] for o in seen if isinstance(o["compare(full=True)"], PairScore)]
    assert {p.declared for p in full} == {None, "same-article", "attribution", "same-original"}
    assert any(p.clash for p in full) and any(p.cite for p in full) and any(p.image for p in full)
    assert any(p.order is not None for p in full) and any(p.layout is not None for p in full)


def test_anchors_intern_keys_and_keep_features() -> None:
    feats = edge_cases()
    interner = {"bitcoin": 0}
    anchors = [native.Anchors(f, interner) for f in feats]
    assert interner["bitcoin"] == 0
    assert sorted(interner.values()) == list(range(len(interner)))
    assert {"sec", "Gensler", "Nakamoto"} <= interner.keys()
    # Per-item keys (URLs) are hashed, not interned: the interner holds only the vocabulary.
    assert not any(key.startswith("https://") for key in interner)
    assert all(
        x.features is f and x.figure_mass == f.figure_mass for x, f in zip(anchors, feats, strict=True)
    )


def test_anchors_left_unfilled_are_refused() -> None:
    anchors = native.Anchors
    good = anchors(edge_cases()[2], {})
    broken = edge_cases()[2]
    object.__setattr__(broken, "paragraph_figures", ((1.0, 9),))  # a paragraph it does not have
    with pytest.raises(ValueError, match="paragraph index"):
        anchors(broken, {})
    bare = anchors.__new__(anchors)
    with pytest.raises(ValueError, match="not initialised"):
        native.compare(good, bare, DEFAULT)
    with pytest.raises(ValueError, match="not initialised"):
        native.paragraph_alignment(bare, good, 0.025)


def test_finish_returns_a_complete_score_itself() -> None:
    a, b = edge_cases()[2:4]
    interner: dict[str, int] = {}
    x, y = native.Anchors(a, interner), native.Anchors(b, interner)
    full = oracle.compare(a, b, DEFAULT)
    assert full.complete
    assert native.finish(full, x, y, DEFAULT) is full


# --- MinHash (``_minhash.pyx`` against ``tests/dedupe_oracle/minhash.py``) ---------------------

_MINHASH_WORDS = (
    "bitcoin",
    "ETF",
    "inflows",
    "record",
    "Биткоин",
    "вырос",
    "до",
    "ставка",
    "بيتكوين",
    "ارتفع",
    "إلى",
    "比特币",
    "上涨",
    "ビットコイン",
    "急騰",
    "取引所",
    "비트코인",
    "상승",
    "Ethereum's",
    "señal",
    "über",
    "Straße",
    "ﬁnance",
    "İstanbul",
    "e\u0301",
    "🚀",
    "70,000",
    "5%",
    "$3.5bn",
    "2025-03-14",
    "a",
    "the",
    "و",
    "的",
    "—",
    "\u200b",
    "x" * 40,
)
"""Words of every script the feeds carry, with figures, combining marks, ligatures, emoji,
zero-width spaces and characters whose lower case is longer (``İ``)."""


def _random_text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 12, 40, 200])
    words = [rng.choice(_MINHASH_WORDS) for _ in range(n)]
    if words and rng.random() < 0.3:  # a repeated phrase: shingles seen more than once
        words += words[: rng.randint(1, len(words))]
    seps = [" ", " ", " ", ", ", "\n\n", "", "-", "。"]
    return "".join(w + rng.choice(seps) for w in words)


@pytest.mark.parametrize("num_perm", [DEFAULT.minhash_perm, 1, 64, 256])
def test_minhash_kernel_agrees_with_the_oracle(num_perm: int) -> None:
    from aggregator.dedupe import _minhash
    from aggregator.dedupe.features import MINHASH_SEED, affine32_permutations
    from tests.dedupe_oracle import minhash as mh_oracle

    a, b = affine32_permutations(num_perm, seed=MINHASH_SEED)
    rng = random.Random(num_perm)
    signed = unsigned = 0
    for _ in range(600):
        text = _random_text(rng)
        words = re.findall(r"\w+", text.lower())
        expected = mh_oracle.minhash(text, False, a, b)
        assert _minhash.minhash_words(words, a, b) == expected, text
        signed += expected is not None
        unsigned += expected is None
        found = mh_oracle.shingles(text, True) | set(re.findall(r"\w+", text))
        if len(found) >= 5:
            assert _minhash.minhash_strings(found, a, b) == mh_oracle.signature(found, a, b), text
    assert signed > 100 and unsigned > 100  # both outcomes exercised


def test_minhash_of_features_agrees_with_the_oracle() -> None:
    """Through ``Extractor.features``, on both eval halves: every locale's path (CJK shingles by
    character, the others by word) gives the oracle's signature."""
    from aggregator.dedupe.features import _parse_locale
    from aggregator.dedupe.lexicon import fold_chinese
    from aggregator.dedupe.numbers import family
    from tests.dedupe_oracle import minhash as mh_oracle

    ex = Extractor()
    docs = [d.doc for c in (ROOT / "eval" / "tune", ROOT / "eval" / "test") for d in load_corpus(c)]
    cjk = 0
    for doc in docs:
        f = ex.features(doc)
        locale = _parse_locale(doc)
        text = doc.text or doc.title
        text = fold_chinese(text) if locale.startswith("zh") else text
        is_cjk = family(locale) == "cjk"
        cjk += is_cjk
        assert f.minhash == mh_oracle.minhash(text, is_cjk, ex._perm_a, ex._perm_b), doc.id
    assert cjk > 10


def test_minhash_kernel_rejects_mismatched_permutations() -> None:
    from aggregator.dedupe import _minhash

    a = np.arange(1, 9, dtype=np.uint32)
    with pytest.raises(ValueError):
        _minhash.minhash_words(["a", "b", "c", "d", "e", "f", "g", "h"], a, a[:4])
    with pytest.raises(ValueError):
        _minhash.minhash_strings(["abc"], a, a[:4])


def test_features_from_kept_urls_are_the_same() -> None:
    """The extractor keeps each URL's identity by spelling: features made with every URL already
    kept (a second pass, other docs' links among them) equal the ones made from scratch."""
    from dataclasses import replace

    spellings = [
        "https://www.coindesk.example/markets/2025/03/14/btc/",
        "http://coindesk.example/markets/2025/03/14/btc?utm_source=rss&id=7",
        "https://coindesk.example/tag/btc",
        "HTTPS://WWW.Coindesk.example/tag/btc/",
        "urn:uuid:1234",
        "  https://t.example/a  ",
        "/relative/path",
        "https://例子.example/新闻/1",
        "",
    ]
    rng = random.Random(14)
    base = [d.doc for c in (ROOT / "eval" / "tune", ROOT / "eval" / "test") for d in load_corpus(c)]
    docs = []
    for doc in base:
        links: dict[str, Any] = {"outbound": rng.sample(spellings, rng.randint(0, 5))}
        if rng.random() < 0.4:
            links["original"] = rng.choice(spellings)
        if rng.random() < 0.3:
            links["alternates"] = [{"href": rng.choice(spellings)}, rng.choice(spellings)]
        docs.append(replace(doc, links=links, image=rng.choice([None, *spellings])))
    warm = Extractor()
    for doc in docs:
        warm.features(doc)
    assert warm._urls  # the second pass below reads them
    cold = Extractor()
    linked = 0
    for doc in docs:
        cold._urls.clear()
        a, b = warm.features(doc), cold.features(doc)
        assert (a.identity, a.declared, a.cites, a.image) == (b.identity, b.declared, b.cites, b.image)
        linked += bool(a.cites and a.declared)
    assert linked > 10

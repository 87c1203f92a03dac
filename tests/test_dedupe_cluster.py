"""Clustering: translations merge, independent reports only relate; guards, determinism, increments."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.dedupe import _pairs
from aggregator.dedupe.cluster import Clusterer
from aggregator.dedupe.corpus import load_corpus
from aggregator.dedupe.features import DedupeDoc, Extractor, Features
from aggregator.dedupe.policy import Thresholds
from tests.dedupe_oracle.similarity import jaccard

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT = ROOT / "eval" / "test"
CONTRACT_TESTDATA = ROOT.parent / "shared" / "contract" / "testdata"
T0 = datetime(2025, 3, 14, 8, 30, tzinfo=UTC)
EXTRACTOR = Extractor(outlet_names={"coindesk": "coindesk", "CoinDesk": "coindesk"})


def doc(n: int, locale: str, outlet: str, title: str, body: str, minutes: int = 0, **kw: object) -> DedupeDoc:
    return DedupeDoc(
        id=n,
        locale=locale,
        outlet=outlet,
        url=f"https://{outlet}.example/{locale.lower()}/news/{n}",
        title=title,
        text=title + "\n" + body,
        published_at=T0 + timedelta(minutes=minutes),
        **kw,  # type: ignore[arg-type]
    )


ORIGINAL = doc(
    1,
    "en",
    "coindesk",
    "Spot bitcoin ETFs pull in $1.2 billion in a single day",
    "US spot bitcoin ETFs took in $1.2 billion on Thursday, the largest inflow in five weeks.\n"
    "BlackRock's fund accounted for $640 million of the total. BTC traded near $84,500.",
)
PT = doc(
    2,
    "pt-PT",
    "gate",
    "ETF de bitcoin à vista atraem 1,2 mil milhões de dólares num só dia",
    "Os ETF de bitcoin à vista dos EUA registaram entradas de 1,2 mil milhões de dólares na quinta-feira.\n"
    "O fundo da BlackRock respondeu por 640 milhões de dólares. O BTC negociava perto de 84.500 dólares.",
    minutes=40,
)
JA = doc(
    3,
    "ja",
    "gate",
    "米国の現物ビットコインETF、1日で12億ドルの資金流入",
    "米国の現物ビットコインETFには木曜日、合計12億ドルの資金が流入した。\n"
    "ブラックロックのファンドが6億4000万ドルを占めた。BTCは8万4500ドル付近で取引された。",
    minutes=55,
)
# Same day, same entities, the same headline number — but another article.
INDEPENDENT = doc(
    4,
    "en",
    "cointelegraph",
    "Bitcoin ETFs log $1.2 billion day as Ether funds bleed $95 million",
    "Ether ETFs saw $95 million leave on Thursday while bitcoin funds added $1.2 billion.\n"
    "Fidelity's fund led with $310 million, and BTC briefly touched $86,100 before easing.",
    minutes=90,
)
INDEPENDENT_ZH = doc(
    5,
    "zh-CN",
    "cointelegraph",
    "比特币ETF单日流入12亿美元，以太坊ETF流出9500万美元",
    "以太坊ETF周四流出9500万美元，比特币基金则流入12亿美元。\n"
    "富达的基金以3.1亿美元领先，BTC一度触及86,100美元后回落。",
    minutes=100,
)


def cluster(docs: list[DedupeDoc], thresholds: Thresholds | None = None) -> tuple[Clusterer, dict[int, int]]:
    c = Clusterer(thresholds or Thresholds())
    for d in docs:
        c.add(EXTRACTOR.features(d))
    return c, dict(c.story_of)


def test_translations_merge_and_independent_report_relates() -> None:
    c, story = cluster([ORIGINAL, PT, JA, INDEPENDENT, INDEPENDENT_ZH])
    assert story[1] == story[2] == story[3]
    assert story[4] == story[5] != story[1]
    assert [other for other, _ in c.related_of(story[1])] == [story[4]]


def test_merge_decision_explains_itself() -> None:
    c = Clusterer()
    c.add(EXTRACTOR.features(ORIGINAL))
    a = c.add(EXTRACTOR.features(PT))
    assert a.kind == "merge" and a.matched_doc == 1
    assert a.score >= a.threshold > 0
    assert {"figures", "entities", "order", "mass"} <= set(a.signals)


def test_one_version_per_locale_per_story() -> None:
    # A second English text with the very same figures is still another article.
    twin = replace(
        INDEPENDENT, id=9, title=ORIGINAL.title + " again", text=ORIGINAL.text.replace("Thursday", "Friday")
    )
    _, story = cluster([ORIGINAL, twin], Thresholds(near_duplicate=0.99))
    assert story[1] != story[9]


def test_exact_near_duplicate_in_the_same_locale_merges() -> None:
    copy = replace(ORIGINAL, id=9, outlet="mirror", url="https://mirror.example/en/1")
    _, story = cluster([ORIGINAL, copy])
    assert story[1] == story[9]


def test_headline_figure_clash_vetoes_a_merge() -> None:
    other_day = doc(
        7,
        "pt-PT",
        "gate",
        "ETF de bitcoin atraem 2,3 mil milhões de dólares num só dia",
        "Os ETF de bitcoin à vista dos EUA registaram entradas de 2,3 mil milhões de dólares.\n"
        "O fundo da BlackRock respondeu por 640 milhões de dólares. O BTC negociava perto de 84.500 dólares.",
        minutes=40,
    )
    _, story = cluster([ORIGINAL, other_day], Thresholds(merge=0.1, min_mass=0.5))
    assert story[1] != story[7]


def test_declared_identity_merges_without_shared_content() -> None:
    a = doc(1, "en", "gate", "Short note", "Nothing to compare here.")
    b = replace(doc(2, "vi", "gate", "Ghi chú ngắn", "Không có gì để so sánh."), links={"original": a.url})
    c = replace(
        doc(3, "ja", "gate", "短いメモ", "比較するものはない。"), url="https://gate.example/ja/news/detail/42"
    )
    d = replace(
        doc(4, "es", "gate", "Nota breve", "Nada que comparar."), url="https://gate.example/es/news/detail/42"
    )
    _, story = cluster([a, b, c, d])
    assert story[1] == story[2]
    assert story[3] == story[4] != story[1]


def test_same_input_same_stories_and_later_items_join_existing_stories() -> None:
    docs = [ORIGINAL, PT, INDEPENDENT, JA, INDEPENDENT_ZH]
    _, first = cluster(docs)
    _, again = cluster(docs)
    assert first == again
    # Incremental: seed the first three as stored, then add the rest.
    c = Clusterer()
    for d in docs[:3]:
        c.seed(EXTRACTOR.features(d), first[d.id])
    for d in docs[3:]:
        c.add(EXTRACTOR.features(d))
    assert c.story_of == first


def test_closed_story_takes_no_newcomers() -> None:
    c = Clusterer()
    c.seed(EXTRACTOR.features(ORIGINAL), 100, closed=True)
    assert c.add(EXTRACTOR.features(PT)).story != 100


def test_items_outside_the_time_window_never_merge() -> None:
    late = replace(PT, published_at=T0 + timedelta(days=10))
    _, story = cluster([ORIGINAL, late])
    assert story[1] != story[2]


@pytest.mark.shared
@pytest.mark.parametrize("mode", ["blind", "hints", "rehost"])
def test_contract_testdata_scores(mode: str) -> None:
    """The contract's own two events, scored by its ``score.py`` (both in ``../shared/contract``)."""
    assert list(CONTRACT_TESTDATA.glob("*.json")), f"missing {CONTRACT_TESTDATA} (../shared beside the clone)"
    sys.path.insert(0, str(ROOT / "eval"))
    from run_eval import pure_scores

    s = pure_scores(CONTRACT_TESTDATA, mode)
    assert s["b3_f1"] >= 0.95 and s["false_merge_rate"] <= 0.01 and s["related_recall"] >= 0.8


def test_corpus_loader_marks_hints() -> None:
    blind = load_corpus(HELD_OUT)
    hints = load_corpus(HELD_OUT, hints=True)
    assert blind and not any("/news/detail/" in d.doc.url for d in blind)
    assert any(d.doc.links.get("original") for d in hints)


def test_look_alike_reports_do_not_crowd_out_the_original() -> None:
    # A template filled with other numbers shares every word but no figure with the newcomer, so
    # it outranks the original on shared anchors; the original, sharing the figures, is still scored.
    look_alike = replace(
        PT,
        id=8,
        outlet="mirror",
        url="https://mirror.example/pt/8",
        title=PT.title.replace("1,2", "2,7"),
        text=PT.text.replace("1,2", "2,7").replace("640", "310").replace("84.500", "91.200"),
        published_at=PT.published_at - timedelta(minutes=30),
    )
    _, story = cluster([ORIGINAL, look_alike, PT], Thresholds(max_candidates=1))
    assert story[2] == story[1] != story[8]


def test_window_keeps_memory_bounded() -> None:
    c = Clusterer()
    for n in range(40):
        day = replace(
            ORIGINAL,
            id=100 + n,
            url=f"https://coindesk.example/en/{n}",
            title=f"Spot bitcoin ETFs pull in ${n + 1}.{n % 7} billion in a single day",
            text=ORIGINAL.text.replace("1.2", f"{n + 1}.{n % 7}").replace("640", str(200 + 13 * n)),
            published_at=T0 + timedelta(days=n),
        )
        c.add(EXTRACTOR.features(day))
    # Items of the last two windows (six days and the newest), one story each; the rest is gone
    # from memory, but every item keeps its story id.
    assert len(c.docs) <= 8 and len(c.stories) <= 8
    assert len(c.story_of) == 40


def anchors(*feats: Features) -> list[_pairs.Anchors]:
    interner: dict[str, int] = {}
    return [_pairs.Anchors(f, interner) for f in feats]


def test_partial_pairs_finish_to_the_full_score() -> None:
    t = Thresholds()
    feats = [EXTRACTOR.features(d.doc) for d in load_corpus(HELD_OUT)]
    xs = anchors(*feats)
    for a, x in zip(feats, xs, strict=True):
        for b, y in zip(feats, xs, strict=True):
            full = _pairs.compare(x, y, t)
            partial = _pairs.compare(x, y, t, full=False)
            assert partial.score >= full.score - 1e-12
            assert _pairs.finish(partial, x, y, t) == full
            assert full.near_duplicate == (
                jaccard(a.minhash, b.minhash) if a.near_family == b.near_family else 0
            )


def test_features_from_worker_processes_match_one_process() -> None:
    docs = [d.doc for d in load_corpus(HELD_OUT)]
    alone = [EXTRACTOR.features(d) for d in docs]
    pooled = list(EXTRACTOR.features_many(docs, workers=2, chunk=3))
    assert [f.doc.id for f in pooled] == [d.id for d in docs]
    assert pooled == alone


def test_independent_report_quoting_the_same_figures_stays_apart() -> None:
    long_report = doc(
        20,
        "en",
        "coindesk",
        "Mt. Gox moves repayment deadline to October 2026",
        "The defunct exchange Mt. Gox pushed its creditor repayment deadline to Oct. 31, 2026.\n"
        "The trustee still holds 34,689 BTC worth about $4.1 billion, after returning 19,500 BTC.\n"
        "Kraken and Bitstamp distributed the last batch; 7,300 creditors have yet to register.",
    )
    # A shorter piece of its own: both of its figures are in the long one, little else is.
    short_piece = doc(
        21,
        "es",
        "criptonoticias",
        "Los acreedores de Mt. Gox esperarán otro año",
        "Los usuarios de Mt. Gox tendrán que esperar: el fideicomisario conserva 34.689 BTC, "
        "unos 4.100 millones de dólares.\nEl analista Samson Mow cree que el mercado lo absorberá sin problemas.",
        minutes=60,
    )
    _, story = cluster([long_report, short_piece])
    assert story[20] != story[21]
    lenient = Thresholds(
        min_figures=0.0,
        min_coverage=0.0,
        min_entities=0.0,
        min_order=0.0,
        min_paragraphs=0.0,
        min_paragraph_order=0.0,
    )
    _, story = cluster([long_report, short_piece], lenient)
    assert story[20] == story[21]


# One press release, told twice: the same figures and names, grouped and ordered otherwise.
RELEASE = doc(
    30,
    "en",
    "coindesk",
    "Cetus on Sui drained of $223 million; $162 million frozen",
    "Cetus Protocol on Sui lost $223 million to an attacker on Thursday.\n"
    "Sui validators froze $162 million; the attacker bridged $60 million in USDC to Ethereum.\n"
    "CETUS fell 40% and SUI 8% after the exploit.\n"
    "Cetus offered the attacker a bounty of $6 million to return the rest.",
)
RETOLD = doc(
    31,
    "fr",
    "cointelegraph",
    "Comment Cetus a perdu 223 millions de dollars sur Sui",
    "Le jeton CETUS a perdu 40 % et le SUI 8 % jeudi, après l'attaque contre Cetus Protocol.\n"
    "Cetus propose une prime de 6 millions de dollars à l'attaquant ; 60 millions de dollars en USDC "
    "sont déjà partis vers Ethereum.\n"
    "Au total 223 millions de dollars ont été pris à Cetus sur Sui, dont 162 millions gelés par les validateurs.",
    minutes=90,
)
TRANSLATED = doc(
    32,
    "fr",
    "gate",
    "Cetus sur Sui vidé de 223 millions de dollars ; 162 millions gelés",
    "Cetus Protocol sur Sui a perdu 223 millions de dollars jeudi au profit d'un attaquant.\n"
    "Les validateurs de Sui ont gelé 162 millions de dollars ; l'attaquant a transféré 60 millions "
    "de dollars en USDC vers Ethereum.\n"
    "Le CETUS a chuté de 40 % et le SUI de 8 %.",
    minutes=90,
)


def test_paragraph_alignment_tells_a_translation_from_a_retelling() -> None:
    t = Thresholds()
    release, retold, translated = anchors(*(EXTRACTOR.features(d) for d in (RELEASE, RETOLD, TRANSLATED)))
    kept = _pairs.finish(_pairs.compare(translated, release, t, full=False), translated, release, t)
    told = _pairs.finish(_pairs.compare(retold, release, t, full=False), retold, release, t)
    assert kept.layout is not None and told.layout is not None
    # The translation (one paragraph dropped) follows the release paragraph by paragraph.
    assert kept.layout[0] >= t.min_paragraphs and kept.layout[1] >= t.min_paragraph_order
    # The retelling shares the figures, but not their grouping into paragraphs or their order.
    assert told.figures is not None and told.figures >= t.min_figures
    assert told.layout[1] < t.min_paragraph_order
    assert "paragraph_order" in told.signals()


def test_retelling_of_one_press_release_is_related_not_merged() -> None:
    _, story = cluster([RELEASE, RETOLD])
    assert story[30] != story[31]
    _, story = cluster([RELEASE, TRANSLATED])
    assert story[30] == story[32]
    # The paragraph guard alone keeps it apart (the order of anchors says so too); with neither,
    # the retelling would be merged.
    _, story = cluster([RELEASE, RETOLD], Thresholds(min_order=0.0))
    assert story[30] != story[31]
    lenient = Thresholds(min_order=0.0, min_paragraphs=0.0, min_paragraph_order=0.0)
    _, story = cluster([RELEASE, RETOLD], lenient)
    assert story[30] == story[31]


def test_collector_is_paused_while_clustering_and_restored_after() -> None:
    import gc

    from aggregator.dedupe.cluster import collector_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed batch")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_only_links_among_the_strongest_of_a_story_are_kept() -> None:
    from aggregator.dedupe.cluster import RelatedLink

    c = Clusterer(Thresholds(related_per_story=1))
    c.related = {
        (1, 2): RelatedLink(5.0, (1, 2)),
        (1, 3): RelatedLink(4.0, (1, 3)),
        (2, 3): RelatedLink(3.0, (2, 3)),
    }
    # 1 and 2 keep their link to each other, 3 its link to 1; 2-3 is nobody's strongest.
    assert list(c.kept_related()) == [(1, 2), (1, 3)]
    c = Clusterer(Thresholds(related_per_story=2))
    c.related = {
        (1, 2): RelatedLink(5.0, (1, 2)),
        (1, 3): RelatedLink(4.0, (1, 3)),
        (2, 3): RelatedLink(3.0, (2, 3)),
    }
    assert list(c.kept_related()) == [(1, 2), (1, 3), (2, 3)]


def test_a_non_merge_names_its_nearest_candidate() -> None:
    """An item that founds a story keeps its best-scoring candidate and that candidate's bar, for
    the editors' review queue; the independent report's is the original, under its bar."""
    c = Clusterer()
    first = c.add(EXTRACTOR.features(ORIGINAL))
    assert first.kind == "new" and first.signals == {}
    a = c.add(EXTRACTOR.features(INDEPENDENT))
    assert a.kind == "new"
    nearest = a.signals["nearest"]
    assert nearest["item"] == 1 and 0 < nearest["score"] < nearest["threshold"]

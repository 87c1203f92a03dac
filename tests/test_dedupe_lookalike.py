"""Look-alikes stay apart: one template filled with other figures, another name or another day.

Each veto of ``cluster`` (other figures in a same-language near-duplicate, another name of one
kind, the same outlet's template on another day) is shown on small multilingual fixtures, with
the translation that must still merge next to the look-alike that must not; the oracle of the
kernels reaches the same stories.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from aggregator.dedupe.cluster import Clusterer, one_way, veto
from aggregator.dedupe.features import DedupeDoc
from aggregator.dedupe.policy import DEFAULT, RELATED_PER_STORY, Thresholds
from tests.dedupe_oracle import OracleClusterer
from tests.dedupe_oracle.similarity import compare
from tests.test_dedupe_cluster import EXTRACTOR, ORIGINAL, PT, doc

# A listing notice and its Russian translation; the same notice for another exchange in Japanese.
LISTING_EN = doc(
    21,
    "en",
    "coindesk",
    "Binance to list Sui perpetuals with 50x leverage on Monday",
    "Binance said it will list SUIUSDT perpetual contracts at 08:00 UTC on Monday with up to 50x leverage.\n"
    "The exchange will open a pool of 3,500,000 SUI for the launch, worth about $12.4 million.\n"
    "The token traded at $3.54 after the notice, up 6.2% on the day.",
)
LISTING_RU = doc(
    22,
    "ru",
    "forklog",
    "Binance запустит бессрочные контракты на Sui с плечом до 50x",
    "Binance сообщила, что в понедельник в 08:00 UTC запустит бессрочные контракты SUIUSDT с плечом до 50x.\n"
    "Биржа откроет пул на 3 500 000 SUI, около $12,4 млн.\n"
    "После объявления токен стоил $3,54, прибавив 6,2% за сутки.",
    minutes=50,
)
LISTING_OTHER_JA = doc(
    23,
    "ja",
    "coinpost",
    "コインベース、Suiの無期限先物を最大50倍で上場へ",
    "コインベースは月曜日のUTC 08:00に最大50倍のレバレッジでSUIUSDT無期限先物を上場すると発表した。\n"
    "同取引所はローンチ向けに350万SUI（約1240万ドル）のプールを用意する。\n"
    "発表後、トークンは3.54ドルで取引され、1日で6.2%上昇した。",
    minutes=70,
)


def cluster(docs: list[DedupeDoc], thresholds: Thresholds = DEFAULT) -> dict[int, int]:
    native, oracle = Clusterer(thresholds), OracleClusterer(thresholds)
    for d in docs:
        f = EXTRACTOR.features(d)
        native.add(f)
        oracle.add(f)
    assert native.story_of == oracle.story_of
    return dict(native.story_of)


def test_another_name_of_one_kind_vetoes_a_merge() -> None:
    story = cluster([LISTING_EN, LISTING_RU, LISTING_OTHER_JA])
    assert story[21] == story[22]
    assert story[23] != story[21]
    a, b = EXTRACTOR.features(LISTING_EN), EXTRACTOR.features(LISTING_OTHER_JA)
    assert veto(compare(a, b, DEFAULT), a, b, DEFAULT) == "names"


def test_a_name_the_other_side_only_lacks_does_not_veto() -> None:
    # A translation whose lexicon misses the exchange's name lacks a name: it does not name another.
    unnamed = replace(LISTING_RU, id=24, title=LISTING_RU.title.replace("Binance", "Биржа"))
    unnamed = replace(unnamed, text=unnamed.text.replace("Binance", "Биржа"))
    a, b = EXTRACTOR.features(LISTING_EN), EXTRACTOR.features(unnamed)
    assert veto(compare(a, b, DEFAULT), a, b, DEFAULT) is None


def test_same_outlet_template_on_another_day_stays_apart() -> None:
    # Gate's wrap of one day, and its Portuguese version: merged when out an hour later, not when
    # the same outlet publishes the same template a day and a half later.
    wrap = replace(ORIGINAL, outlet="gate")
    soon = replace(PT, id=31, published_at=wrap.published_at.replace(hour=9, minute=40))
    story = cluster([wrap, soon])
    assert story[1] == story[31]
    later = replace(PT, id=32, published_at=wrap.published_at + (soon.published_at - wrap.published_at) * 30)
    story = cluster([wrap, later])
    assert story[1] != story[32]
    a, b = EXTRACTOR.features(wrap), EXTRACTOR.features(later)
    assert veto(compare(a, b, DEFAULT), a, b, DEFAULT) == "recurring"
    # Another outlet's translation that late is not a template of the same outlet.
    assert (
        veto(compare(a, b, DEFAULT), a, replace(b, doc=replace(b.doc, outlet="livecoins")), DEFAULT) is None
    )


@pytest.mark.parametrize(
    ("locale", "text", "changed"),
    [
        (
            "vi",
            "Giá Bitcoin hôm nay: BTC ở mức 97.150 USD, ETH ở mức 3.420 USD\n"
            "Tổng vốn hóa thị trường tiền mã hóa đạt 3,41 nghìn tỷ USD, khối lượng giao dịch 24 giờ là 98,7 tỷ USD.\n"
            "Chỉ số sợ hãi và tham lam ở mức 71 điểm.",
            ("97.150", "96.480"),
        ),
        (
            "zh-TW",
            "比特幣今日價格：BTC報97,150美元，ETH報3,420美元\n"
            "加密貨幣總市值達3.41兆美元，24小時成交量為987億美元。\n"
            "恐懼與貪婪指數為71。",
            ("987億", "912億"),
        ),
    ],
)
def test_same_language_copy_with_other_figures_is_another_article(
    locale: str, text: str, changed: tuple[str, str]
) -> None:
    title, body = text.split("\n", 1)
    today = doc(41, locale, "gate", title, body)
    mirror = replace(today, id=42, outlet="panews", url=f"https://panews.example/{locale}/42")
    tomorrow = replace(
        mirror, id=43, url=f"https://panews.example/{locale}/43", text=today.text.replace(*changed)
    )
    story = cluster([today, mirror, tomorrow])
    assert story[41] == story[42]
    assert story[43] != story[41]


def test_same_language_copy_naming_another_exchange_is_another_article() -> None:
    copy = replace(LISTING_EN, id=51, outlet="mirror", url="https://mirror.example/en/51")
    other = replace(
        copy, id=52, url="https://mirror.example/en/52", text=copy.text.replace("Binance", "Kraken")
    )
    story = cluster([LISTING_EN, copy, other])
    assert story[21] == story[51]
    assert story[52] != story[21]


def test_one_way_is_containment_either_way() -> None:
    assert one_way({1.0, 2.0}, {1.0, 2.0, 3.0}) and one_way({1.0, 2.0, 3.0}, {2.0})
    assert not one_way({1.0, 2.0}, {1.0, 3.0})


def test_api_cap_of_related_links_is_dedupes() -> None:
    from aggregator import entries

    assert entries.RELATED_PER_STORY == RELATED_PER_STORY == DEFAULT.related_per_story


# One outlet's Monday price wrap and its Spanish translation; another outlet's Tuesday wrap in
# Ukrainian: the same sentences, prices a percent or two apart.
WRAP_EN = doc(
    61,
    "en",
    "beincrypto",
    "Bitcoin holds $97,150 as Ether climbs to $3,420",
    "Bitcoin traded at $97,150 on Monday, while Ether rose to $3,420.\n"
    "Total crypto market value stood at $3.41 trillion, with $98.7 billion traded in 24 hours.\n"
    "Solana changed hands at $184.20.",
)
WRAP_ES = doc(
    62,
    "es",
    "criptonoticias",
    "Bitcoin se mantiene en 97.150 dólares y Ether sube a 3.420 dólares",
    "El bitcoin cotizó a 97.150 dólares el lunes, mientras que Ether subió a 3.420 dólares.\n"
    "El valor total del mercado cripto fue de 3,41 billones de dólares, con 98.700 millones negociados en 24 horas.\n"
    "Solana se negoció a 184,20 dólares.",
    minutes=80,
)
WRAP_NEXT_UK = doc(
    63,
    "uk",
    "forklog",
    "Біткоїн тримається на рівні $96 480, Ether зростає до $3 390",
    "У вівторок біткоїн торгувався по $96 480, а Ether піднявся до $3 390.\n"
    "Загальна вартість крипторинку становила $3,38 трлн, обсяг торгів за 24 години — $97,2 млрд.\n"
    "Solana коштувала $181,60.",
    minutes=60 * 20,
)


def test_prices_merely_close_are_another_days_wrap() -> None:
    story = cluster([WRAP_EN, WRAP_ES, WRAP_NEXT_UK])
    assert story[61] == story[62]
    assert story[63] != story[61]
    a, b = EXTRACTOR.features(WRAP_EN), EXTRACTOR.features(WRAP_NEXT_UK)
    assert veto(compare(a, b, DEFAULT), a, b, DEFAULT) == "figures"


def test_a_heavy_figure_on_each_side_that_the_other_lacks_vetoes() -> None:
    # The Spanish wrap with one total swapped for another: each side has an amount the other lacks.
    other_total = replace(WRAP_ES, id=64, text=WRAP_ES.text.replace("98.700 millones", "61.200 millones"))
    a, b = EXTRACTOR.features(WRAP_EN), EXTRACTOR.features(other_total)
    assert veto(compare(a, b, DEFAULT), a, b, DEFAULT) == "figures"
    # A translation that drops the total lacks a figure: it does not bring another.
    dropped = replace(
        WRAP_ES, id=65, text=WRAP_ES.text.replace(", con 98.700 millones negociados en 24 horas", "")
    )
    c = EXTRACTOR.features(dropped)
    assert veto(compare(a, c, DEFAULT), a, c, DEFAULT) is None

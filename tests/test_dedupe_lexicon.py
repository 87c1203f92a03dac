"""Entity lexicon lookups across scripts, and zh-Hans/zh-Hant folding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.dedupe.features import DedupeDoc, Extractor
from aggregator.dedupe.lexicon import LEXICON_PATH, Lexicon, default_lexicon, fold_chinese


def entities(text: str, locale: str) -> set[str]:
    doc = DedupeDoc(
        1, locale, "x", "https://x.example/1", text.split("\n")[0], text, datetime(2025, 1, 1, tzinfo=UTC)
    )
    return set(Extractor(outlet_names={}).features(doc).entities)


@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("BlackRock files again", "en"),
        ("贝莱德再次提交申请", "zh-CN"),
        ("貝萊德再次提交申請", "zh-TW"),
        ("ブラックロックが再申請", "ja"),
        ("Компания Блэкрок подала заявку", "ru"),
        ("قدمت بلاك روك طلبا جديدا", "ar"),
    ],
)
def test_blackrock_in_six_scripts(text: str, locale: str) -> None:
    assert "blackrock" in entities(text, locale)


@pytest.mark.parametrize(
    ("text", "locale", "entity"),
    [
        ("Трампом подписан указ", "ru", "trump"),  # case ending on a stem
        ("وقال ترامب إن", "ar", "trump"),  # clitic prefix و
        ("川普簽署行政命令", "zh-TW", "trump"),
        ("美國證券交易委員會批准", "zh-TW", "sec"),
        ("米証券取引委員会が承認", "ja", "sec"),
        ("Комиссия по ценным бумагам и биржам США", "ru", "sec"),
        ("the Securities and Exchange Commission said", "en", "sec"),
        ("比特币ETF录得净流入", "zh-CN", "etf"),  # Latin run inside Han text
        ("幣安宣布", "zh-TW", "binance"),
    ],
)
def test_surface_forms(text: str, locale: str, entity: str) -> None:
    assert entity in entities(text, locale)


def test_case_sensitive_forms_do_not_match_common_words() -> None:
    assert "circle" not in entities("They sat in a circle and talked strategy.", "en")
    assert "circle" in entities("The issuer Circle said on Monday that USDC grew.", "en")


def test_zh_hant_folds_to_hans() -> None:
    assert fold_chinese("比特幣現貨ETF資金") == "比特币现货ETF资金"


def test_lexicon_file_is_well_formed_and_large_enough() -> None:
    lexicon = Lexicon.load(LEXICON_PATH)
    forms = len(lexicon.latin_ci) + len(lexicon.latin_cs) + len(lexicon.cyrillic) + len(lexicon.arabic)
    forms += len(lexicon.cjk_forms)
    assert len(lexicon.entities) >= 100 and forms >= 500
    assert all(0 < e.weight <= 1 for e in lexicon.entities.values())
    assert default_lexicon().latin("bitcoin") == "bitcoin"

"""Figures read the same whatever the locale wrote them as."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.dedupe.numbers import buckets_near, close, extract_figures, read_figure


def values(text: str, locale: str) -> list[float]:
    return [f.value for f in extract_figures(text, locale)]


@pytest.mark.parametrize(
    ("text", "locale"),
    [
        ("1,5 mil milhões de dólares", "pt-PT"),
        ("US$ 1,5 bilhão", "pt-BR"),
        ("R$ 1,5 bi", "pt-BR"),
        ("15 亿美元", "zh-CN"),
        ("15億ドル", "ja"),
        ("15億美元", "zh-TW"),
        ("$1.5 billion", "en"),
        ("$1.5B", "en"),
        ("1,5 млрд долларов", "ru"),
        ("1,5 мільярда доларів", "uk"),
        ("١٫٥ مليار دولار", "ar"),
        ("1,5 tỷ USD", "vi"),
        ("1,5 miliar dolar AS", "id"),
        ("1,5 M dolar", "id"),
        ("1,5 Md$", "fr"),
        ("1,5 milliard de dollars", "fr"),
        ("1,5 mil millones de dólares", "es"),
        ("1500 M USD", "es"),
    ],
)
def test_one_and_a_half_billion_in_every_locale(text: str, locale: str) -> None:
    assert values(text, locale) == [1.5e9]


@pytest.mark.parametrize(
    ("text", "locale", "expected"),
    [
        ("9万8000人", "ja", 98000.0),
        ("7億4240万ドル", "ja", 742_400_000.0),
        ("8万4500ドル", "ja", 84500.0),
        ("8.5萬美元", "zh-TW", 85000.0),
        ("84.500 dólares", "pt-PT", 84500.0),
        ("84,500美元", "zh-CN", 84500.0),
        ("2 048 ETH", "fr", 2048.0),
        ("364\u202f032", "fr", 364032.0),
        ("$85k", "en", 85000.0),
        ("1.234,5", "es", 1234.5),
        ("1,234.5", "en", 1234.5),
    ],
)
def test_compact_and_grouped_forms(text: str, locale: str, expected: float) -> None:
    assert values(text, locale) == [expected]


def test_a_letter_glued_to_a_number_is_not_always_a_multiplier() -> None:
    assert values("19b-4 filings", "en")[0] == 19.0
    assert values("12 BTC", "en") == [12.0]
    # "M" is a million in Spanish but a miliar (10⁹) in Indonesian.
    assert values("5 M", "es") == [5e6]
    assert values("5 M", "id") == [5e9]


def test_years_and_small_counts_weigh_little() -> None:
    figs = {f.value: f.weight for f in extract_figures("In 2024, 3 funds raised $640 million", "en")}
    assert figs[2024.0] < 0.5 and figs[3.0] < 0.5 and figs[640e6] == 1.0


_STYLES = {
    "en": lambda m, u: f"{m:.1f} {'billion' if u == 9 else 'million'}",
    "pt-PT": lambda m, u: f"{m:.1f}".replace(".", ",") + (" mil milhões" if u == 9 else " milhões"),
    "pt-BR": lambda m, u: f"{m:.1f}".replace(".", ",") + (" bilhões" if u == 9 else " milhões"),
    "es": lambda m, u: f"{m:.1f}".replace(".", ",") + (" mil millones" if u == 9 else " millones"),
    "fr": lambda m, u: f"{m:.1f}".replace(".", ",") + (" milliards" if u == 9 else " millions"),
    "ru": lambda m, u: f"{m:.1f}".replace(".", ",") + (" млрд" if u == 9 else " млн"),
    "uk": lambda m, u: f"{m:.1f}".replace(".", ",") + (" млрд" if u == 9 else " млн"),
    "vi": lambda m, u: f"{m:.1f}".replace(".", ",") + (" tỷ" if u == 9 else " triệu"),
    "id": lambda m, u: f"{m:.1f}".replace(".", ",") + (" miliar" if u == 9 else " juta"),
    "ar": lambda m, u: (
        f"{m:.1f}".translate(str.maketrans("0123456789.", "٠١٢٣٤٥٦٧٨٩٫")) + (" مليار" if u == 9 else " مليون")
    ),
    "zh-CN": lambda m, u: f"{m * 10 ** (u - 8):g}亿" if u == 9 else f"{m * 100:g}万",
    "ja": lambda m, u: f"{m * 10 ** (u - 8):g}億" if u == 9 else f"{m * 100:g}万",
}


@given(
    tenths=st.integers(min_value=11, max_value=9999),
    unit=st.sampled_from([6, 9]),
    locale=st.sampled_from(sorted(_STYLES)),
)
def test_any_amount_reads_back_in_any_locale_style(tenths: int, unit: int, locale: str) -> None:
    mantissa = tenths / 10
    text = "raised " + _STYLES[locale](mantissa, unit) + " today"
    got = values(text, locale)
    assert len(got) == 1
    assert math.isclose(got[0], mantissa * 10**unit, rel_tol=1e-9)


@given(
    n=st.integers(min_value=1000, max_value=99_999_999),
    locale=st.sampled_from(["en", "pt-PT", "fr", "ru", "es", "vi", "id"]),
)
def test_grouped_integers_read_back(n: int, locale: str) -> None:
    grouped = f"{n:,}"
    sep = {"en": ",", "fr": "\u202f", "ru": "\u00a0"}.get(locale, ".")
    text = grouped.replace(",", sep)
    assert read_figure(text, locale) == float(n)
    assert values(f"about {text} coins", locale) == [float(n)]


@given(st.floats(min_value=1.0, max_value=1e13), st.floats(min_value=-0.02, max_value=0.02))
def test_close_figures_share_a_bucket_neighbourhood(value: float, jitter: float) -> None:
    """A figure is indexed under its own bucket and queries its neighbours' (``blocking``)."""
    other = value * (1 + jitter)
    (indexed,) = buckets_near(other, 0.0)
    if close(value, other, 0.025):
        assert indexed in buckets_near(value, 0.025)

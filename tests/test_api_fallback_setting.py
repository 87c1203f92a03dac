"""BABELWIRE_LOCALE_FALLBACKS replaces rows of the documented fallback table."""

from __future__ import annotations

import pytest

from api.locales import FALLBACKS, Chain, Step, parse_fallbacks
from core.errors import ConfigError


def test_rows_are_replaced_and_others_kept() -> None:
    table = parse_fallbacks("uk=ru,en;fr = es , en ; zh-tw=zh-CN:s2twp")
    assert table["uk"] == Chain(steps=(Step("ru"), Step("en")))
    assert table["fr"] == Chain(steps=(Step("es"), Step("en")))
    assert table["zh-TW"] == Chain(steps=(Step("zh-CN", "s2twp"),))
    assert table["pt-PT"] == FALLBACKS["pt-PT"]


def test_never_steps() -> None:
    assert parse_fallbacks("es=en,!pt-BR")["es"] == Chain(steps=(Step("en"),), never=frozenset({"pt-BR"}))


def test_empty_setting_is_the_documented_table() -> None:
    assert parse_fallbacks("") == dict(FALLBACKS)


@pytest.mark.parametrize("bad", ["uk", "xx=en", "uk=en,pt-XX", "uk=!ru:t2s", "=en"])
def test_bad_rows_are_one_line_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_fallbacks(bad)
    assert "BABELWIRE_LOCALE_FALLBACKS" in str(err.value) and "\n" not in str(err.value)

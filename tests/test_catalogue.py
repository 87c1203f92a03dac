"""The outlet catalogue and disclaimer seeds load, validate, and extract shared article ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import CatalogueError
from core.locales import LOCALES
from sources.catalogue import OUTLETS_DIR, article_key, load_catalogue, outlet_for_url
from sources.disclaimers import load_disclaimers

EXPECTED_OUTLETS = {
    "blocktempo",
    "gate",
    "cointelegraph",
    "coindesk",
    "beincrypto",
    "panews",
    "coinpost",
    "forklog",
    "livecoins",
    "criptonoticias",
}


def test_every_outlet_loads_with_valid_feeds() -> None:
    catalogue = load_catalogue()
    assert set(catalogue) == EXPECTED_OUTLETS
    policies = {policy for policy, _ in load_disclaimers()}
    for outlet_id, spec in catalogue.items():
        assert spec.id == outlet_id
        assert spec.feeds, outlet_id
        assert set(spec.feeds) <= set(LOCALES)
        assert all(url.startswith(("http://", "https://")) for url in spec.feeds.values())
        assert spec.disclaimer_policy in policies
        assert set(spec.translates_from) <= EXPECTED_OUTLETS
    assert catalogue["gate"].disclaimer_policy == "third-party"
    assert set(catalogue["gate"].feeds) == set(LOCALES)
    assert set(catalogue["gate"].attribution_phrases) == set(LOCALES)


def test_gate_urls_in_two_locales_share_one_article_key() -> None:
    pt = article_key("gate", "https://www.gate.com/pt-pt/news/detail/41872")
    ja = article_key("gate", "https://www.gate.com/ja/news/detail/41872?utm_source=x")
    bare = article_key("gate", "https://www.gate.com/news/detail/41872")
    assert pt == ja == bare == "gate:41872"
    assert article_key("gate", "https://www.gate.com/ja/news/detail/41873") == "gate:41873"
    assert article_key("gate", "https://www.gate.com/ja/price/bitcoin-btc") is None
    assert article_key("cointelegraph", "https://cointelegraph.com/news/some-slug") is None
    assert article_key("nope", "https://www.gate.com/ja/news/detail/1") is None


def test_outlet_is_found_from_any_of_its_hosts() -> None:
    assert outlet_for_url("https://jp.cointelegraph.com/rss") == "cointelegraph"
    assert outlet_for_url("https://blocktempo.com/feed/") == "blocktempo"
    assert outlet_for_url("https://www.coindeskjapan.com/feed/") == "coindesk"
    assert outlet_for_url("https://unknown.example.org/feed") is None


def _catalogue_dir(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "outlets"
    directory.mkdir()
    for existing in OUTLETS_DIR.glob("*.toml"):
        (directory / existing.name).write_text(existing.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / f"{name}.toml").write_text(text, encoding="utf-8")
    return directory


GOOD = """id = "acme"
name = "Acme"
homepage = "https://acme.example/"
disclaimer_policy = "none"
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[feeds]\n"pt-XX" = "https://acme.example/feed"\n', "unknown locale 'pt-XX'"),
        ('[feeds]\nen = "ftp://acme.example/feed"\n', "only http(s)"),
        (
            'article_id_pattern = "/news/\\\\d+"\n[feeds]\nen = "https://acme.example/f"\n',
            "exactly one group",
        ),
        ('translates_from = ["ghost"]\n[feeds]\nen = "https://acme.example/f"\n', "unknown outlet 'ghost'"),
        ('colour = "red"\n[feeds]\nen = "https://acme.example/f"\n', "unknown keys colour"),
        ('[feeds]\nen = "https://acme.example/f"\n[attribution_phrases]\nen = "Via"\n', "list of non-empty"),
    ],
)
def test_invalid_outlet_file_is_refused_naming_the_file(tmp_path: Path, extra: str, message: str) -> None:
    directory = _catalogue_dir(tmp_path, "acme", GOOD + extra)
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(directory)
    assert "acme.toml" in str(caught.value)
    assert message in str(caught.value)


def test_outlet_id_must_match_file_name(tmp_path: Path) -> None:
    directory = _catalogue_dir(tmp_path, "other", GOOD + '[feeds]\nen = "https://acme.example/f"\n')
    with pytest.raises(CatalogueError, match=r"other\.toml: id 'acme'"):
        load_catalogue(directory)


def test_a_valid_extra_outlet_loads(tmp_path: Path) -> None:
    directory = _catalogue_dir(tmp_path, "acme", GOOD + '[feeds]\n"pt-BR" = "https://acme.example/br"\n')
    catalogue = load_catalogue(directory)
    assert set(catalogue) == EXPECTED_OUTLETS | {"acme"}
    assert catalogue["acme"].feeds == {"pt-BR": "https://acme.example/br"}
    assert catalogue["acme"].article_key("https://acme.example/news/1") is None


def test_disclaimers_cover_every_locale_natively() -> None:
    texts = load_disclaimers()
    third_party = [texts[("third-party", locale)] for locale in LOCALES]
    assert all(text.strip() for text in third_party)
    assert len(set(third_party)) == len(LOCALES)
    assert all(texts[("none", locale)] == "" for locale in LOCALES)
    assert "financial advice" in texts[("third-party", "en")]


def test_disclaimers_missing_a_locale_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "disclaimers.toml"
    path.write_text('[none]\n[third-party]\nen = "Third-party content."\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"disclaimers\.toml: \[third-party\] has no text for zh-CN"):
        load_disclaimers(path)

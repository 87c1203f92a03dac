"""Parse stage on small fixture feeds written for these tests (tests/fixtures/feeds/)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.parse import ParsedFeed, RawEntry, parse_feed

FEEDS = Path(__file__).resolve().parent / "fixtures" / "feeds"
URL = "https://fixture.example/feed"


def parse(name: str, content_type: str | None = None) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), url=URL, content_type=content_type)


def only_usable(feed: ParsedFeed) -> tuple[RawEntry, ...]:
    assert feed.error is None, feed.error
    assert feed.entries
    return feed.entries


def test_rss20_fields() -> None:
    feed = parse("rss20.xml", "application/rss+xml; charset=utf-8")
    first, second = only_usable(feed)
    assert feed.bozo is None
    assert (feed.title, feed.language, feed.link) == (
        "Ledger Lines",
        "en-US",
        "https://ledger-lines.example/",
    )
    assert first.guid == "ll-0001"
    # the <link> element, not the later atom:link to the Japanese translation
    assert first.link is not None and first.link.startswith(
        "https://Ledger-Lines.example:443/news/block-size"
    )
    assert first.title == "Sample chain raises block size &amp; fees drop"
    assert first.published == datetime(2026, 3, 3, 14, 30, tzinfo=UTC)
    assert first.author == "Ada Writer"
    assert first.image == "https://cdn.ledger-lines.example/img/block.jpg"
    assert first.source_url == "https://wire.example/feed.xml"
    assert first.tags == ("Markets", "Layer 1")
    assert ("https://ledger-lines.example/ja/news/block-size", "ja") in first.alternates
    # markup is passed on unsanitized: normalize sanitizes last
    assert "<script>" in first.summary_html
    assert "<iframe" in first.content_html
    assert second.image == "https://cdn.ledger-lines.example/img/second.png"
    assert second.guid == "https://ledger-lines.example/news/second"


def test_rss10_rdf() -> None:
    (entry,) = only_usable(parse("rss10.xml"))
    assert entry.link == "https://rdf-news.example/a/1"
    assert entry.title == "Le réseau d'essai passe une mise à jour"
    assert entry.author == "Claire Auteur"
    assert (entry.published or entry.updated) == datetime(2026, 2, 14, 7, 15, tzinfo=UTC)


def test_rss092_latin1_without_dates_or_guids() -> None:
    feed = parse("rss092.xml")
    first, second = only_usable(feed)
    assert feed.language == "es"
    assert first.title == "Una cadena de prueba alcanza un nuevo máximo"
    assert "mañana" in first.summary_html
    assert (first.guid, first.published, first.updated) == (None, None, None)
    assert (second.link, second.title) == (None, "")


def test_atom10_alternates_source_and_plain_text() -> None:
    first, second = only_usable(parse("atom10.xml", "application/atom+xml"))
    assert first.guid == "tag:rede-teste.example,2026:post-1"
    assert first.link == "https://rede-teste.example/post/1"
    assert dict(first.alternates) == {
        "https://rede-teste.example/en/post/1": "en",
        "https://rede-teste.example/ja/post/1": "ja",
    }
    assert first.title == "Validadores <b>aprovam</b> atualização"
    # a type="text" summary arrives escaped, so it reads as text, never as markup
    assert first.summary_html == "Resumo em texto puro com &lt;tags&gt; literais."
    assert first.content_html == "<p>Os validadores aprovaram a atualização da rede de teste.</p>"
    assert first.published == datetime(2026, 1, 20, 13, 0, tzinfo=UTC)
    assert first.source_url == "https://fonte.example/artigo/9"
    assert first.author == "Bruno Autor"
    assert second.published is None
    assert second.updated == datetime(2026, 1, 21, 8, 0, tzinfo=UTC)
    assert "<em>XHTML</em>" in second.content_html


def test_atom03() -> None:
    (entry,) = only_usable(parse("atom03.xml"))
    assert entry.link == "https://legacy-atom.example/2025/11/unlock"
    assert entry.published == datetime(2025, 11, 2, 9, 0, tzinfo=UTC)
    assert entry.author == "Lee Archive"


@pytest.mark.parametrize("content_type", [None, "application/feed+json", "application/json; charset=utf-8"])
def test_json_feed_11(content_type: str | None) -> None:
    feed = parse("jsonfeed11.json", content_type)
    first, second = only_usable(feed)
    assert (feed.title, feed.language, feed.link) == ("JSON Wire", "id", "https://json-wire.example/")
    assert first.guid == "jw-1"
    assert first.link == "https://json-wire.example/berita/1?utm_campaign=x"
    assert first.source_url == "https://asal.example/berita/1"
    assert first.published == datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
    assert first.updated == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    assert (first.author, first.tags, first.image) == (
        "Dewi Penulis",
        ("jaringan", "biaya"),
        "https://json-wire.example/img/1.jpg",
    )
    assert second.guid == "2"
    assert second.content_html == "Item tanpa judul.<br>\nBaris kedua."
    assert second.image == "https://json-wire.example/img/2.png"


def test_json_that_is_not_a_feed() -> None:
    feed = parse_feed(b'{"hello": "world"}', url=URL, content_type="application/json")
    assert feed.error is not None and not feed.entries
    broken = parse_feed(b'{"items": [', url=URL, content_type="application/json")
    assert broken.error is not None and "JSON" in broken.error


def test_bozo_feed_with_entries_is_accepted() -> None:
    feed = parse("bozo.xml")
    first, second = only_usable(feed)
    assert feed.bozo is not None
    assert first.title == "Fees &amp; gas: what changed"
    assert first.link == "https://broken.example/fees?a=1&b=2"
    assert second.link == "https://broken.example/second"


def test_html_page_is_an_error_not_an_exception() -> None:
    feed = parse("html_page.html", "text/html; charset=utf-8")
    assert feed.entries == ()
    assert feed.error is not None and "HTML" in feed.error


@pytest.mark.parametrize("body", [b"", b"   \n\t", (FEEDS / "blob.bin").read_bytes(), b"just some words"])
def test_unusable_bodies(body: bytes) -> None:
    feed = parse_feed(body, url=URL)
    assert feed.entries == ()
    assert feed.error


def test_body_naming_a_local_file_is_not_opened(tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes((FEEDS / "rss20.xml").read_bytes())
    feed = parse_feed(str(secret).encode(), url=URL)
    assert feed.entries == ()
    assert feed.error


def test_windows_1252_declared_as_utf8_keeps_its_text() -> None:
    feed = parse("cp1252_declared_utf8.xml")
    (entry,) = only_usable(feed)
    assert feed.bozo is not None
    assert entry.title == "“Café” token climbs – naïve traders cheer"
    assert "résumé" in entry.summary_html and "5€" in entry.summary_html


def test_big5_declared() -> None:
    feed = parse("big5.xml")
    (entry,) = only_usable(feed)
    assert feed.title == "區塊鏈新聞"
    assert entry.title == "比特幣價格今天上漲"


@pytest.mark.parametrize("content_type", [None, "text/xml", "application/rss+xml; charset=utf-8"])
def test_gb2312_declared_as_utf8_is_recovered(content_type: str | None) -> None:
    feed = parse("gb2312_declared_utf8.xml", content_type)
    (entry,) = only_usable(feed)
    assert feed.bozo is not None
    assert feed.title == "链上快讯"
    assert entry.title == "比特币价格今天上涨"
    assert "交易量" in entry.summary_html


def test_entries_without_links_or_dates() -> None:
    bare, guid_only, permalink = only_usable(parse("no_links_no_dates.xml"))
    assert (bare.guid, bare.link, bare.published, bare.updated) == (None, None, None, None)
    assert (guid_only.guid, guid_only.link) == ("bare-2", None)
    # a permalink guid (isPermaLink defaults to true) stands in for the missing link
    assert permalink.link == "https://bare.example/p/3"


def test_duplicate_guids_are_all_returned() -> None:
    entries = only_usable(parse("duplicate_guids.xml"))
    assert [entry.guid for entry in entries] == ["same-guid", "same-guid", "other-guid"]


def test_multilingual_text_survives() -> None:
    feed = parse("multilingual.xml")
    titles = {entry.guid: entry.title for entry in only_usable(feed)}
    assert titles["t-zh"] == "测试链升级后交易费用下降"
    assert titles["t-ja"].startswith("テストチェーン")
    assert titles["t-ar"].startswith("انخفاض")
    assert titles["t-ru"].startswith("Комиссии")
    assert titles["t-zh-tw"] == "測試鏈升級後交易費用下降"


def test_relative_permalink_guid_is_not_tied_to_the_feed_url() -> None:
    a = parse_feed((FEEDS / "multilingual.xml").read_bytes(), url="https://a.example/feed")
    b = parse_feed((FEEDS / "multilingual.xml").read_bytes(), url="https://b.example/rss")
    assert [e.guid for e in a.entries] == [e.guid for e in b.entries]


def test_feed_served_as_text_html_still_parses() -> None:
    feed = parse("rss20.xml", "text/html")
    assert len(only_usable(feed)) == 2
    assert feed.bozo is not None and "text/html" in feed.bozo


def test_valid_feed_without_entries_is_not_an_error() -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    feed = parse_feed(body, url=URL)
    assert (feed.entries, feed.error, feed.bozo, feed.title) == ((), None, None, "Quiet")


def test_broken_feed_without_entries_is_an_error() -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Cut off</title><item><tit'
    feed = parse_feed(body, url=URL)
    assert feed.entries == ()
    assert feed.error is not None and feed.bozo is not None


def test_control_characters_and_lone_surrogates_are_cleaned_once_here() -> None:
    rss = (
        b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        b"<item><guid>c-1</guid><title>bell&#7; back&#8; start&#1; \xe2\x80\xae rtl</title>"
        b"<description>a\x01b &#0;nul &#x1F600; ok</description></item></channel></rss>"
    )
    (entry,) = only_usable(parse_feed(rss, url=URL, content_type="application/rss+xml"))
    assert entry.title == "bell back start \u202e rtl"
    assert "\x01" not in entry.summary_html and "\x00" not in entry.summary_html
    assert "\U0001f600" in entry.summary_html or "&#x1F600;" in entry.summary_html

    # One lone surrogate escape in one title used to cost every entry of the feed.
    feed = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "t\\u0007", "items": ['
        b'{"id": "1", "title": "broken \\ud800 here\\u0001", "content_text": "x\\udfff\\u0000y"},'
        b'{"id": "2", "title": "pair \\ud83d\\ude00 kept", "content_text": "fine"}]}'
    )
    parsed = parse_feed(feed, url=URL, content_type="application/feed+json")
    first, second = only_usable(parsed)
    assert parsed.title == "t"
    assert first.title == "broken \ufffd here" and first.content_html == "x\ufffdy"
    assert second.title == "pair \U0001f600 kept"
    for text in (first.title, first.content_html, second.title):
        text.encode("utf-8")  # no surrogate left: any database and encoder takes it

"""Normalize stage: plain RawEntry data in, NormalizedEntry out; plus every corpus feed."""

from __future__ import annotations

import importlib.metadata
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.normalize import (
    ALLOWED_TAGS,
    NormalizedEntry,
    canonical_url,
    detect_language,
    extract_tickers,
    identity_url,
    normalize_entry,
)
from aggregator.parse import RawEntry, parse_feed

FEED_URL = "https://news.example/feeds/en.xml"
FETCHED = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
FEEDPARSER_TESTS = ROOT / ".corpus" / f"feedparser-{importlib.metadata.version('feedparser')}" / "tests"
REAL_FEEDS = ROOT.parent / "shared" / "corpus" / "real-feeds"


def raw(**fields: object) -> RawEntry:
    base: dict[str, object] = {
        "guid": "g-1",
        "link": "https://news.example/a/1",
        "title": "A title",
        "summary_html": "",
        "content_html": "",
        "published": datetime(2026, 3, 5, 9, 0, tzinfo=UTC),
        "updated": None,
        "author": None,
        "image": None,
        "alternates": (),
        "source_url": None,
        "tags": (),
    }
    base.update(fields)
    return RawEntry(**base)  # type: ignore[arg-type]


def norm(entry: RawEntry, locale: str = "en", fetched_at: datetime = FETCHED) -> NormalizedEntry:
    return normalize_entry(entry, feed_url=FEED_URL, locale=locale, fetched_at=fetched_at)


# --- canonical_url --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("HTTPS://News.Example:443/a?utm_source=x&id=3&FBCLID=1#frag", None, "https://news.example/a?id=3"),
        ("http://news.example:80", None, "http://news.example/"),
        ("http://news.example:8080/x", None, "http://news.example:8080/x"),
        ("/b/c?gclid=1&ref=home&mc_cid=2&mc_eid=3&q=1", FEED_URL, "https://news.example/b/c?q=1"),
        ("../img/x.png", FEED_URL, "https://news.example/img/x.png"),
        ("//cdn.example/y.jpg", FEED_URL, "https://cdn.example/y.jpg"),
        ("https://x.example/?a=1&amp;b=2", None, "https://x.example/?a=1&b=2"),
        ("https://x.example/a b", None, "https://x.example/a%20b"),
        ("https://x.example/ニュース", None, "https://x.example/%E3%83%8B%E3%83%A5%E3%83%BC%E3%82%B9"),
        ("https://bücher.example/", None, "https://xn--bcher-kva.example/"),
        ("javascript:alert(1)", None, None),
        ("mailto:a@b.example", None, None),
        ("relative/only", None, None),
        ("", FEED_URL, None),
        ("http://[::1", None, None),
    ],
)
def test_canonical_url(url: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(url, base) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(), st.from_regex(r"https?://[A-Za-z0-9.:-]{1,20}(/[^#]{0,20})?(\?[^#]{0,30})?(#.{0,5})?")
    )
)
def test_canonical_url_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    if once is not None:
        assert canonical_url(once) == once
        assert once.startswith(("http://", "https://"))
        assert "#" not in once and "utm_" not in once.lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_canonical_url_with_base_is_idempotent(path: str) -> None:
    once = canonical_url(path, FEED_URL)
    if once is not None:
        assert canonical_url(once, FEED_URL) == once
        assert canonical_url(once) == once


# --- the entry ------------------------------------------------------------------------------


def test_link_image_alternates_source_are_canonical() -> None:
    entry = norm(
        raw(
            link="/a/1?utm_campaign=c&id=9#x",
            image="/img/1.jpg?utm_source=feed",
            alternates=(("/ja/a/1", "ja"), ("/a/1?id=9", None)),
            source_url="HTTPS://Wire.Example/story?fbclid=1",
        )
    )
    assert entry.link == "https://news.example/a/1?id=9"
    assert entry.image == "https://news.example/img/1.jpg"
    # the alternate equal to the entry's own link is not a translation of it
    assert entry.links["alternates"] == [{"href": "https://news.example/ja/a/1", "hreflang": "ja"}]
    assert entry.links["source"] == "https://wire.example/story"


def test_sanitizes_last_and_makes_urls_absolute() -> None:
    html = (
        '<div onclick="x()"><p>Text <a href="/rel?utm_medium=m&amp;k=v" onmouseover="y()">link</a></p>'
        '<script>evil()</script><style>p{}</style><iframe src="https://v.example/e"></iframe>'
        '<img src="pic.png" onerror="z()"><a href="javascript:alert(1)">js</a>'
        '<img src="data:image/png;base64,AAAA"><span style="x"><font>in</font>line</span><table><tr><td>cell</td><td>two</td></tr></table></div>'
    )
    entry = norm(raw(content_html=html, summary_html="<p>short <b>bold</b></p>"))
    out = entry.content_html
    for banned in (
        "<script",
        "evil",
        "<style",
        "<iframe",
        "onclick",
        "onerror",
        "onmouseover",
        "javascript:",
        "data:",
        "<span",
        "<font",
    ):
        assert banned not in out, banned
    assert '<a href="https://news.example/rel?k=v" rel="noopener noreferrer nofollow">link</a>' in out
    assert '<img src="https://news.example/feeds/pic.png">' in out
    assert "cell" in out
    assert set(re.findall(r"<([a-z0-9]+)", out)) <= ALLOWED_TAGS
    assert entry.summary_html == "<p>short <b>bold</b></p>"
    assert entry.text == "A title\nText link\njsinline\ncell two"


def test_text_keeps_paragraphs_and_decodes_entities() -> None:
    entry = norm(
        raw(
            title="  Fees &amp;   gas <b>drop</b> ",
            content_html="<p>One&nbsp;two</p><p>Three  &lt;4&gt;</p>A<br>B",
        )
    )
    assert entry.title == "Fees & gas drop"
    assert entry.text == "Fees & gas drop\nOne two\nThree <4>\nA\nB"


def test_double_escaped_title_is_decoded() -> None:
    assert norm(raw(title="What&amp;#039;s next")).title == "What's next"


def test_content_hash_follows_the_text() -> None:
    a = norm(raw(content_html="<p>Body one</p>"))
    b = norm(raw(content_html="<p>Body one</p>", link="https://news.example/other"))
    c = norm(raw(content_html="<p>Body two</p>"))
    assert a.content_hash == b.content_hash != c.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)


def test_dates_are_aware_utc_and_clamped() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert norm(raw(published=datetime(2026, 3, 5, 10, 0, tzinfo=plus_two))).published_at == datetime(
        2026, 3, 5, 8, 0, tzinfo=UTC
    )
    assert norm(raw(published=None, updated=datetime(2026, 3, 4, tzinfo=UTC))).published_at == datetime(
        2026, 3, 4, tzinfo=UTC
    )
    assert norm(raw(published=None)).published_at == FETCHED
    assert norm(raw(published=FETCHED + timedelta(days=30))).published_at == FETCHED
    assert norm(raw(published=FETCHED + timedelta(hours=23))).published_at == FETCHED + timedelta(hours=23)
    old = datetime(2019, 1, 1, tzinfo=UTC)
    assert norm(raw(published=old)).published_at == old
    naive_fetch = norm(raw(published=None), fetched_at=datetime(2026, 1, 1, 12, 0))
    assert naive_fetch.published_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_missing_title_falls_back_to_the_first_line() -> None:
    entry = norm(raw(title="", content_html="<p>" + "word " * 60 + "</p><p>second</p>"))
    assert entry.title.endswith("…") and len(entry.title) <= 121
    assert entry.text.startswith("word word") and "second" in entry.text


def test_permalink_guid_stands_in_for_a_missing_link() -> None:
    assert (
        norm(raw(link=None, guid="https://news.example/p/3?utm_source=x")).link == "https://news.example/p/3"
    )
    assert norm(raw(link=None, guid="opaque-7")).link is None


@pytest.mark.parametrize(
    ("body", "original"),
    [
        (
            '<p>Originally published on <a href="https://blocktempo.example/p/1">BlockTempo</a>.</p>',
            "https://blocktempo.example/p/1",
        ),
        (
            '<p><a href="https://gate.example/pt/news/1">Ver original</a></p>',
            "https://gate.example/pt/news/1",
        ),
        (
            '<p>原文連結：<a href="https://blocktempo.example/zh/2">動區</a></p>',
            "https://blocktempo.example/zh/2",
        ),
        ('<p><a href="https://src.example/3?utm_source=x">原文链接</a></p>', "https://src.example/3"),
        ('<p><a href="https://vn.example/4">Xem bài gốc</a></p>', "https://vn.example/4"),
        ('<p>Источник: <a href="https://ru.example/5">ForkLog</a></p>', "https://ru.example/5"),
        ('<p>المصدر: <a href="https://ar.example/6">هنا</a></p>', "https://ar.example/6"),
        ('<p>元記事は<a href="https://jp.example/7">こちら</a></p>', "https://jp.example/7"),
        (
            '<p>Publicado originalmente em <a href="https://pt.example/8">Portal</a></p>',
            "https://pt.example/8",
        ),
        ('<p>See <a href="https://other.example/9">this chart</a> for context.</p>', None),
        (
            '<p>Original reporting.</p><p>Lots of other words here that push the phrase far away from the link at the end of it all <a href="https://late.example/">x</a></p>',
            None,
        ),
    ],
)
def test_original_attribution_link(body: str, original: str | None) -> None:
    assert norm(raw(content_html=body)).links["original"] == original


def test_outbound_links_are_absolute_deduplicated_and_capped() -> None:
    anchors = "".join(f'<a href="/n/{i % 30}?utm_source=x">{i}</a>' for i in range(60))
    entry = norm(
        raw(
            content_html=anchors
            + '<a href="https://news.example/a/1">self</a><a href="mailto:x@y.example">m</a>'
        )
    )
    outbound = entry.links["outbound"]
    assert len(outbound) == 20 and len(set(outbound)) == 20
    assert all(url.startswith("https://news.example/n/") and "utm" not in url for url in outbound)


def test_outbound_links_skip_the_entry_itself() -> None:
    entry = norm(
        raw(content_html='<a href="https://news.example/a/1">self</a><a href="https://x.example/">x</a>')
    )
    assert entry.links["outbound"] == ["https://x.example/"]


# --- tickers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tickers"),
    [
        ("BTC and ETH rally; $sol follows", ("BTC", "ETH", "SOL")),
        ("比特币BTC跌破6万美元，以太坊ETH同步下跌", ("BTC", "ETH")),
        ("ビットコイン（ＢＴＣ）が上昇", ("BTC",)),
        ("Le bitcoin (BTC/USDT) à 5 $US", ("BTC", "USDT")),
        ("$100 million raised, $USD strength", ()),
        ("BTCUSD and XBTC and ETH2 are not tickers", ()),
        ("The link is near the dot", ()),
        ("$LINK and $DOT listed; DOGE-USD pair", ("DOGE", "DOT", "LINK")),
        ("", ()),
    ],
)
def test_extract_tickers(text: str, tickers: tuple[str, ...]) -> None:
    assert extract_tickers(text) == tickers


def test_tickers_on_the_entry() -> None:
    assert norm(raw(title="XRP jumps", content_html="<p>以太坊ETH</p>")).tickers == ("ETH", "XRP")


# --- language -------------------------------------------------------------------------------

RU = "Тестовая сеть завершила обновление во вторник, и после этого комиссии заметно снизились."
UK = "Тестова мережа завершила оновлення у вівторок, і після цього комісії помітно знизилися."
ZH_HANS = (
    "测试链在周二完成了网络升级，升级之后用户支付的交易费用明显下降，开发团队表示这是为了让更多的人使用。"
)
ZH_HANT = (
    "測試鏈在週二完成了網路升級，升級之後使用者支付的交易費用明顯下降，開發團隊表示這是為了讓更多的人使用。"
)
JA = "テストチェーンは火曜日にネットワークのアップグレードを完了し、その後手数料が大きく下がりました。"
AR = "أكملت الشبكة التجريبية ترقية يوم الثلاثاء، وبعدها انخفضت الرسوم التي يدفعها المستخدمون بشكل واضح."
ES = "La red de prueba completó la actualización el martes y desde entonces las comisiones bajaron mucho para los usuarios."
FR = "Le réseau de test a terminé la mise à jour mardi et depuis les frais ont beaucoup baissé pour les utilisateurs."
PT = "A rede de teste concluiu a atualização na terça-feira e desde então as taxas caíram muito para os usuários."
EN = "The test network finished the upgrade on Tuesday and since then the fees have dropped a lot for the users."
VI = "Mạng thử nghiệm đã hoàn tất nâng cấp vào thứ Ba và kể từ đó phí giao dịch đã giảm mạnh cho người dùng."
ID = "Jaringan uji telah menyelesaikan pembaruan pada hari Selasa dan sejak itu biaya turun banyak untuk pengguna."


@pytest.mark.parametrize(
    ("text", "declared", "expected"),
    [
        (RU, "en", "ru"),
        (UK, "ru", "uk"),
        (UK, "uk", "uk"),
        (ZH_HANS, "en", "zh-CN"),
        (ZH_HANT, "en", "zh-TW"),
        (ZH_HANT, "zh-CN", "zh-CN"),  # declared Chinese variant is kept
        (ZH_HANS, "zh-TW", "zh-TW"),
        (ZH_HANS, "ja", "zh-CN"),
        (JA, "zh-CN", "ja"),
        (AR, "en", "ar"),
        (ES, "en", "es"),
        (FR, "en", "fr"),
        (PT, "en", "pt-BR"),
        (PT, "pt-PT", "pt-PT"),
        (EN, "es", "en"),
        (EN, "en", "en"),
        (VI, "en", "vi"),
        (ID, "en", "id"),
        (EN, "ru", "en"),
        ("Short text", "ja", "ja"),  # too short to overrule the source
        ("BTC 比特币", "en", "en"),
        ("1234567890 " * 10, "vi", "vi"),
    ],
)
def test_detect_language(text: str, declared: str, expected: str) -> None:
    assert detect_language(text, declared) == expected


def test_language_on_the_entry_overrides_a_lying_source() -> None:
    assert norm(raw(title="Комиссии снизились", content_html=f"<p>{RU}</p>"), locale="en").language == "ru"
    assert norm(raw(content_html=f"<p>{EN}</p>"), locale="en").language == "en"


# --- every corpus feed ----------------------------------------------------------------------

_HEADER = re.compile(rb"^Header:\s*Content-type:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def feedparser_corpus() -> list[Path]:
    """feedparser's own test feeds, from its source distribution (``make corpus`` fetches them)."""
    if not FEEDPARSER_TESTS.is_dir():
        raise AssertionError(f"test corpus missing: {FEEDPARSER_TESTS}; run `make corpus` (make test does)")
    files = sorted(FEEDPARSER_TESTS.rglob("*.xml")) + sorted(FEEDPARSER_TESTS.rglob("*.json"))
    assert len(files) > 2000
    return files


def real_feeds() -> list[Path]:
    """Real crypto-outlet feeds and OPML lists captured by third parties (``../shared/corpus``)."""
    if not REAL_FEEDS.is_dir():
        raise AssertionError(f"test corpus missing: expected {REAL_FEEDS} (../shared beside the clone)")
    files = sorted(path for path in REAL_FEEDS.rglob("*") if path.is_file())
    assert len(files) > 15
    return files


CORPORA = [
    pytest.param(feedparser_corpus, 900, id="feedparser"),
    pytest.param(real_feeds, 12, id="real-feeds", marks=pytest.mark.shared),
]


@pytest.mark.parametrize(("corpus_files", "least_usable"), CORPORA)
def test_every_corpus_feed_parses_and_normalizes(
    corpus_files: Callable[[], list[Path]], least_usable: int
) -> None:
    usable = 0
    for path in corpus_files():
        body = path.read_bytes()
        header = _HEADER.search(body[:2000])
        content_type = header.group(1).decode("ascii", "replace") if header else None
        feed = parse_feed(body, url="https://corpus.example/feed.xml", content_type=content_type)
        if feed.error:
            assert feed.entries == (), path
            continue
        usable += bool(feed.entries)
        for entry in feed.entries:
            result = normalize_entry(
                entry, feed_url="https://corpus.example/feed.xml", locale="en", fetched_at=FETCHED
            )
            assert result.published_at.tzinfo is not None and result.published_at.utcoffset() == timedelta(
                0
            ), path
            assert result.published_at <= FETCHED + timedelta(days=1), path
            for html in (result.summary_html, result.content_html):
                lowered = html.lower()
                assert "<script" not in lowered and "<iframe" not in lowered and "<style" not in lowered, path
                assert not re.search(r"<[^>]+\son[a-z]+\s*=", lowered), path
                assert "javascript:" not in lowered, path
            assert result.link is None or result.link.startswith(("http://", "https://")), path
    assert usable > least_usable


@pytest.mark.parametrize(
    ("corpus_files", "least_hard"),
    [
        pytest.param(feedparser_corpus, 200, id="feedparser"),
        pytest.param(real_feeds, 12, id="real-feeds", marks=pytest.mark.shared),
    ],
)
def test_charset_and_broken_corpus_feeds_keep_as_many_entries_as_feedparser(
    corpus_files: Callable[[], list[Path]], least_hard: int
) -> None:
    """Where feedparser (defaults) gets entries out of a hard case, parse_feed gets as many.

    Entries with no id, link, title or body (truncated items) are dropped on purpose.
    """
    paths = [
        path for path in corpus_files() if path.parent.name in ("encoding", "illformed", "crypto", "chardet")
    ]
    assert len(paths) > least_hard
    for path in paths:
        body = path.read_bytes()
        header = _HEADER.search(body[:2000])
        content_type = header.group(1).decode("ascii", "replace") if header else None
        reference = feedparser.parse(
            io.BytesIO(body), response_headers={"content-type": content_type or "application/xml"}
        )
        ours = parse_feed(body, url="https://corpus.example/feed.xml", content_type=content_type)
        with_content = [
            e
            for e in reference.entries
            if any(e.get(key) for key in ("id", "link", "title", "summary", "content"))
        ]
        assert len(ours.entries) >= len(with_content), path


def test_prepared_feed_survives_pickling_for_worker_processes() -> None:
    import pickle

    from aggregator.normalize import prepare_feed

    body = (Path(__file__).parent / "fixtures" / "e2e" / "coindesk-en.xml").read_bytes()
    parsed, entries = prepare_feed(body, url=FEED_URL, content_type=None, locale="en", fetched_at=FETCHED)
    assert entries and parsed.entries == () and parsed.error is None
    assert pickle.loads(pickle.dumps((parsed, entries))) == (parsed, entries)


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example.com/a/b-1.jpg",
        "https://Img.Example.com/a",
        "https://example.com",
        "https://example.com/a;",
        "https://example.com/a?utm_source=x",
        "http://example.com:80/a",
        "https://example.com./a",
        "https://example.com/a b",
    ],
)
def test_canonical_url_fast_paths_agree_with_the_full_rules(url: str) -> None:
    """Absolute URLs skip urljoin (and plain ones everything): the answer must not change."""
    from urllib.parse import urljoin

    from aggregator.normalize.urls import _canonical_url

    for base in (None, FEED_URL, "http://other.example/x/"):
        full = _canonical_url(urljoin(base, url) if base else url, None)
        assert canonical_url(url, base) == full


def test_identity_url_is_the_canonical_url_with_scheme_www_and_slash_folded() -> None:
    assert identity_url("http://www.Example.com/a/?utm_source=x#top") == "https://example.com/a"
    assert identity_url("https://example.com/a") == identity_url("http://www.example.com:80/a/")
    assert identity_url("https://example.com/a?id=7") == "https://example.com/a?id=7"
    assert identity_url(" urn:uuid:1234 ") == "urn:uuid:1234"
    assert identity_url(None) is None and identity_url("") is None

"""OPML 2.0 import/export: round trips, strict one-line errors, and no entity expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import CatalogueError
from core.locales import LOCALES
from sources.opml import SourceSpec, export_opml, parse_opml


def opml(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0"><head><title>t</title></head><body>{body}</body></opml>'.encode()


def refused(data: bytes) -> str:
    with pytest.raises(CatalogueError) as caught:
        parse_opml(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_export_then_parse_gives_the_same_sources() -> None:
    specs = [
        SourceSpec(
            url="https://www.blocktempo.com/feed/", outlet="blocktempo", locale="zh-TW", title="動區動趨"
        ),
        SourceSpec(
            url="https://www.gate.com/pt/news/rss", outlet="gate", locale="pt-PT", title='Gate "pt" & <news>'
        ),
        SourceSpec(url="http://127.0.0.1:8001/feeds/gate/ar.xml", outlet="gate", locale="ar", title=None),
    ]
    data = export_opml(specs, title="mine")
    assert data.startswith(b"<?xml")
    assert b'version="2.0"' in data
    assert b"<title>mine</title>" in data
    assert parse_opml(data) == specs


def test_nested_outlines_inherit_language_and_outlet() -> None:
    data = opml(
        '<outline text="Gate" outlet="gate">'
        '  <outline text="Portuguese" language="pt-PT">'
        '    <outline text="Gate pt" type="rss" xmlUrl="https://www.gate.com/pt/news/rss"/>'
        "  </outline>"
        '  <outline text="Gate ja" type="rss" xmlUrl="https://www.gate.com/ja/news/rss" language="ja"/>'
        "</outline>"
        '<outline text="BlockTempo" type="rss" xmlUrl="https://www.blocktempo.com/feed/" language="zh-TW"/>'
    )
    assert parse_opml(data) == [
        SourceSpec("https://www.gate.com/pt/news/rss", "gate", "pt-PT", "Gate pt"),
        SourceSpec("https://www.gate.com/ja/news/rss", "gate", "ja", "Gate ja"),
        SourceSpec("https://www.blocktempo.com/feed/", "blocktempo", "zh-TW", "BlockTempo"),
    ]


def test_language_is_matched_case_insensitively() -> None:
    data = opml(
        '<outline text="a" xmlUrl="https://livecoins.com.br/feed/" language="pt-br"/>'
        '<outline text="b" xmlUrl="https://www.blocktempo.com/feed/" language="ZH-tw"/>'
        '<outline text="c" xmlUrl="https://forklog.com/feed/" language="RU"/>'
    )
    assert [spec.locale for spec in parse_opml(data)] == ["pt-BR", "zh-TW", "ru"]


def test_outlet_is_derived_from_the_host_when_absent() -> None:
    data = opml(
        '<outline text="a" xmlUrl="https://forklog.com.ua/feed/" language="uk"/>'
        '<outline text="b" xmlUrl="https://news.example-outlet.org/rss" language="en"/>'
        '<outline text="c" xmlUrl="https://www.coindeskjapan.com/feed/" language="ja"/>'
    )
    assert [spec.outlet for spec in parse_opml(data)] == ["forklog", "example-outlet", "coindesk"]


def test_unknown_locale_names_the_outline_in_one_line() -> None:
    data = opml(
        '<outline text="ok" xmlUrl="https://www.gate.com/en/news/rss" language="en"/>'
        '<outline text="Group"><outline text="Gate pt" xmlUrl="https://www.gate.com/pt/news/rss" language="pt-XX"/></outline>'
    )
    message = refused(data)
    assert message == "outline 3 \"Gate pt\" (https://www.gate.com/pt/news/rss): unknown locale 'pt-XX'"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<outline text="no url" language="en"/>', 'outline 1 "no url": missing xmlUrl'),
        ('<outline text="x" type="rss" xmlUrl="https://a.example.com/f"/>', "missing language"),
        ('<outline text="x" xmlUrl="ftp://a.example.com/f" language="en"/>', "only http(s) URLs"),
        ('<outline text="x" xmlUrl="javascript:alert(1)" language="en"/>', "only http(s) URLs"),
        ('<outline text="x" xmlUrl="https:///nohost" language="en"/>', "no host"),
        ('<outline text="x" xmlUrl="http://10.0.0.7/f" language="en"/>', "add an outlet attribute"),
        (
            '<outline text="x" xmlUrl="https://a.example.com/f" language="en" outlet="Not A Slug"/>',
            "not a slug",
        ),
        (
            '<outline text="x" xmlUrl="https://a.example.com/f" language="en"/>'
            '<outline text="y" xmlUrl="https://a.example.com/f" language="ja"/>',
            "already listed by outline 1",
        ),
    ],
)
def test_invalid_outline_is_refused(body: str, expected: str) -> None:
    assert expected in refused(opml(body))


def test_one_bad_outline_refuses_the_whole_document() -> None:
    good = "".join(
        f'<outline text="g{n}" xmlUrl="https://a.example.com/{n}" language="en"/>' for n in range(5)
    )
    assert "outline 6" in refused(
        opml(good + '<outline text="bad" xmlUrl="https://a.example.com/x" language="xx"/>')
    )


def test_identical_repeats_collapse() -> None:
    line = '<outline text="x" xmlUrl="https://a.example.com/f" language="en"/>'
    assert len(parse_opml(opml(line + f'<outline text="cat">{line}</outline>'))) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "not an XML document"),
        (b"this is not xml", "not an XML document"),
        (b"<opml><body><outline></body></opml>", "not an XML document"),
        (b'<rss version="2.0"><channel/></rss>', "not an OPML document: root element is <rss>"),
        (b'<opml version="2.0"><head/></opml>', "no <body>"),
        (b'<opml version="9"><body/></opml>', "unsupported OPML version"),
    ],
)
def test_not_opml_is_refused_in_one_line(data: bytes, expected: str) -> None:
    assert expected in refused(data)


def test_entity_expansion_bomb_is_refused() -> None:
    lol = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY lol0 "lol">{lol}]>'
        '<opml version="2.0"><body><outline text="&lol9;" xmlUrl="https://a.example.com/f" language="en"/></body></opml>'
    ).encode()
    assert "DOCTYPE" in refused(bomb)


def test_external_entity_is_refused() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<opml version="2.0"><body><outline text="&x;" xmlUrl="https://a.example.com/f" language="en"/></body></opml>'
    )
    assert "DOCTYPE" in refused(xxe)
    assert "DOCTYPE" in refused(b'<!DOCTYPE opml SYSTEM "http://127.0.0.1:9/x.dtd"><opml><body/></opml>')


def test_utf16_document_is_read() -> None:
    spec = SourceSpec("https://coinpost.jp/?feed=rss2", "coinpost", "ja", "コインポスト")
    text = export_opml([spec]).decode("utf-8").replace("encoding='utf-8'", "encoding='utf-16'")
    assert parse_opml(text.encode("utf-16")) == [spec]


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_urls = st.builds(
    lambda scheme, labels, tld, port, path: f"{scheme}://{'.'.join(labels)}.{tld}{port}/{path}",
    st.sampled_from(["http", "https"]),
    st.lists(_label, min_size=1, max_size=3),
    st.sampled_from(["com", "org", "jp", "com.br", "io"]),
    st.sampled_from(["", ":8080"]),
    st.from_regex(r"[A-Za-z0-9._~/-]{0,30}(\?[a-z]=[A-Za-z0-9&=%]{0,12})?", fullmatch=True),
)
_titles = st.none() | st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
    max_size=40,
).map(str.strip).filter(bool)
_specs = st.builds(
    SourceSpec,
    url=_urls,
    outlet=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    locale=st.sampled_from(LOCALES),
    title=_titles,
)


@given(st.lists(_specs, max_size=8, unique_by=lambda spec: spec.url))
def test_any_valid_sources_round_trip(specs: list[SourceSpec]) -> None:
    assert parse_opml(export_opml(specs)) == specs

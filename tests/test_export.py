"""The re-export (api/export): RSS 2.0, Atom and JSON Feed of the localized feed, and the OPML list.

Rows are inserted the way ingest and dedupe leave them (tests/test_api.Seeder), on SQLite and
PostgreSQL. Independent tools judge the output: feedparser (RSS, Atom), ``jing`` with an RFC 4287
RELAX NG schema (tests/schemas/atom.rnc), ``jsonschema`` with a JSON Feed 1.1 schema
(tests/schemas/jsonfeed-1.1.schema.json), and a strict XML parser for well-formedness.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import feedparser
import jsonschema
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from aggregator import LOCALES
from aggregator.entries import refresh_story_entries
from aggregator.models import Item, Story
from aggregator.settings import Settings
from aggregator.websub import FORMATS
from api.export.document import entry_id
from api.export.texts import DESCRIPTION, TITLE
from tests.test_api import SEEDS, T0, Member, Seeder, make_client

SCHEMAS = Path(__file__).parent / "schemas"
ATOM_NS = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
HOSTILE = "A & B <b>x</b> ]]> \x01\x07\x08 \u202eRTL\u202c 😀 𝄞 \U000e0001 'q' \"dq\""


@pytest.fixture
def seed(engine: sa.Engine) -> Seeder:
    return Seeder(engine)


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> Iterator[Any]:
    with make_client(settings, engine) as c:
        yield c


def get(client: Any, fmt: str, **params: Any) -> Any:
    r = client.get(f"/v1/feed.{fmt}", params=params)
    assert r.status_code == 200, r.text
    return r


def api_items(client: Any, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/v1/feed", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def parsed(body: bytes) -> Any:
    """feedparser's reading of an RSS/Atom body; it must not be bozo."""
    doc = feedparser.parse(body)
    assert doc.bozo == 0, doc.get("bozo_exception")
    return doc


def entries(fmt: str, body: bytes) -> list[dict[str, Any]]:
    """(id, title, language) of each entry, read by feedparser (XML) or json (JSON Feed)."""
    if fmt == "json":
        feed = json.loads(body)
        return [{"id": i["id"], "title": i["title"], "language": i["language"]} for i in feed["items"]]
    doc = parsed(body)
    if fmt == "atom":
        root = ET.fromstring(body)
        langs = [e.get(XML_LANG) for e in root.iter(f"{ATOM_NS}entry")]
    else:
        langs = [doc.feed.get("language")] * len(doc.entries)
    return [
        {"id": e.id, "title": e.title, "language": lang} for e, lang in zip(doc.entries, langs, strict=True)
    ]


def next_link(fmt: str, body: bytes) -> str | None:
    if fmt == "json":
        url: str | None = json.loads(body).get("next_url")
        return url
    links = parsed(body).feed.get("links", [])
    return next((link["href"] for link in links if link.get("rel") == "next"), None)


def _story_set(seed: Seeder) -> dict[str, int]:
    ids = {
        "pt": seed.story(
            Member("pt-PT", title="Bitcoin sobe", tickers=["BTC"], image="https://img.example/pt.png"),
            Member("en", outlet="coindesk", title="Bitcoin rises", minutes=20),
            Member("zh-TW", outlet="blocktempo", title="比特幣上漲", minutes=40),
            at=T0,
        ),
        "en_only": seed.story(Member("en", outlet="coindesk", tickers=["ETH"]), at=T0 - timedelta(hours=1)),
        "ru_only": seed.story(Member("ru", title="Только по-русски"), at=T0 - timedelta(hours=2)),
        "zh": seed.story(Member("zh-CN", outlet="gate", title="以太坊"), at=T0 - timedelta(hours=3)),
        "ja": seed.story(Member("ja", title="日本語の記事", tickers=["SOL"]), at=T0 - timedelta(hours=4)),
    }
    seed.relate(ids["pt"], ids["en_only"])
    return ids


# ---- what the tools say -------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["pt-PT", "uk", "zh-TW", "en", "ar"])
def test_every_format_serves_the_feed_s_stories_in_order(client: Any, seed: Seeder, locale: str) -> None:
    _story_set(seed)
    items = api_items(client, locale=locale)
    assert items
    for fmt in FORMATS:
        r = get(client, fmt, locale=locale)
        got = entries(fmt, r.content)
        assert [e["id"] for e in got] == [entry_id(locale, i["id"]) for i in items]
        assert [e["title"] for e in got] == [i["title"] for i in items]
        if fmt == "rss":
            assert {e["language"] for e in got} == {locale}
        else:
            assert [e["language"] for e in got] == [i["locale_served"] for i in items]
    root = ET.fromstring(get(client, "atom", locale=locale).content)
    assert root.get(XML_LANG) == locale
    assert root.findtext(f"{ATOM_NS}title") == TITLE[locale]
    assert json.loads(get(client, "json", locale=locale).content)["language"] == locale
    rss = parsed(get(client, "rss", locale=locale).content)
    assert rss.feed.language == locale and rss.feed.subtitle == DESCRIPTION[locale]


def test_entry_fields_in_each_format(client: Any, seed: Seeder) -> None:
    ids = _story_set(seed)
    (item,) = [i for i in api_items(client, locale="pt-PT") if i["id"] == ids["pt"]]

    rss = parsed(get(client, "rss", locale="pt-PT").content)
    entry = next(e for e in rss.entries if e.id == entry_id("pt-PT", ids["pt"]))
    assert entry.guidislink is False and entry.link == item["url"]
    assert entry.author == "Gate News"  # dc:creator
    assert [t.term for t in entry.tags] == ["BTC"]
    assert entry.media_content[0]["url"] == "https://img.example/pt.png"
    assert entry.source["href"] == item["original"]["url"] and entry.source["title"] == "Gate News"
    assert entry.published_parsed[:5] == (2026, 11, 1, 12, 0)
    assert "GMT" in entry.published  # RFC 822

    atom = parsed(get(client, "atom", locale="pt-PT").content)
    entry = next(e for e in atom.entries if e.id == entry_id("pt-PT", ids["pt"]))
    alternates = {link.get("hreflang"): link.href for link in entry.links if link.rel == "alternate"}
    assert alternates == {"pt-PT": item["url"]} | {t["locale"]: t["url"] for t in item["translations"]}
    related = [link.href for link in entry.links if link.rel == "related"]
    assert related == [r["url"] for r in item["related"]] and related
    assert entry.author == "Gate News" and [t.term for t in entry.tags] == ["BTC"]
    assert entry.published == "2026-11-01T12:00:00Z" and entry.updated_parsed >= entry.published_parsed

    feed = json.loads(get(client, "json", locale="pt-PT").content)
    jitem = next(i for i in feed["items"] if i["id"] == entry_id("pt-PT", ids["pt"]))
    assert jitem["url"] == item["url"] and jitem["tags"] == ["BTC"]
    assert (
        jitem["image"] == "https://img.example/pt.png" and jitem["date_published"] == "2026-11-01T12:00:00Z"
    )
    assert jitem["authors"] == [{"name": "Gate News"}]
    ext = jitem["_babelwire"]
    assert ext["original"] == item["original"] and ext["story_id"] == ids["pt"]
    assert ext["translations"] == item["translations"]
    assert [r["url"] for r in ext["related"]] == related
    # the link to the original and its outlet's name are in the content, before the disclaimer
    assert f'<a href="{item["original"]["url"]}">Gate News</a>' in jitem["content_html"]


def test_disclaimer_of_the_requested_locale_ends_the_content(client: Any, seed: Seeder) -> None:
    seed.story(Member("en", outlet="coindesk", title="Only English"))
    seed.story(Member("en", outlet="blocktempo", title="No disclaimer"), at=T0 - timedelta(hours=1))
    seed.disclaimer("third-party", "uk", 3, "Сторонній вміст, редакція v3")
    for fmt in FORMATS:
        body = get(client, fmt, locale="uk").content
        if fmt == "json":
            contents = [i["content_html"] for i in json.loads(body)["items"]]
        else:
            contents = [e.content[0].value if fmt == "atom" else e.description for e in parsed(body).entries]
        # (feedparser writes <hr> as <hr />)
        assert (
            contents[0]
            .replace("<hr />", "<hr>")
            .endswith("<hr><p><small>Сторонній вміст, редакція v3</small></p>")
        )
        assert "<hr" not in contents[1]  # the outlet's policy needs none
    feed = json.loads(get(client, "json", locale="uk").content)
    assert feed["items"][0]["_babelwire"]["disclaimer"] == {
        "text": "Сторонній вміст, редакція v3",
        "version": "3",
        "locale": "uk",
    }
    assert feed["items"][0]["language"] == "en"  # served through the fallback


def test_pages_follow_the_same_cursor_as_the_json_feed(client: Any, seed: Seeder) -> None:
    for n in range(7):
        seed.story(Member("en", title=f"story {n}"), at=T0 - timedelta(minutes=n))
    expected = []
    cursor = None
    while True:
        r = client.get(
            "/v1/feed", params={"locale": "en", "limit": 3} | ({"cursor": cursor} if cursor else {})
        )
        expected.append([entry_id("en", i["id"]) for i in r.json()["items"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    for fmt in FORMATS:
        pages = []
        url: str | None = f"/v1/feed.{fmt}?locale=en&limit=3"
        while url:
            body = client.get(url).content
            pages.append([e["id"] for e in entries(fmt, body)])
            url = next_link(fmt, body)
            assert url is None or url.startswith("http://testserver/v1/feed." + fmt)
        assert pages == expected, fmt


def test_ids_survive_re_renders_and_new_translations(client: Any, seed: Seeder, engine: sa.Engine) -> None:
    sid = seed.story(Member("en", outlet="coindesk", title="English original"))
    before = {fmt: get(client, fmt, locale="pt-PT") for fmt in FORMATS}
    again = {fmt: get(client, fmt, locale="pt-PT") for fmt in FORMATS}
    assert all(before[f].content == again[f].content for f in FORMATS)  # deterministic re-render
    with Session(engine) as s:
        source = seed._source(s, "gate", "pt-PT")
        s.add(
            Item(
                source_id=source,
                story_id=sid,
                identity="translation-1",
                link="https://gate.example/pt-PT/news/t1",
                title="Tradução portuguesa",
                summary_html="<p>Resumo</p>",
                published_at=T0 + timedelta(minutes=30),
                locale="pt-PT",
                tickers=[],
                content_hash="t1",
            )
        )
        story = s.get(Story, sid)
        assert story is not None
        story.updated_at = T0 + timedelta(hours=5)
        s.add(story)
        refresh_story_entries(s, [sid])  # as dedupe does in the transaction that adds a member
        s.commit()
    for fmt in FORMATS:
        after = get(client, fmt, locale="pt-PT")
        old, new = entries(fmt, before[fmt].content), entries(fmt, after.content)
        assert [e["id"] for e in new] == [e["id"] for e in old] == [entry_id("pt-PT", sid)]
        assert new[0]["title"] == "Tradução portuguesa" and old[0]["title"] == "English original"
        assert after.headers["etag"] != before[fmt].headers["etag"]
        assert after.headers["last-modified"] == format_datetime(T0 + timedelta(hours=5), usegmt=True)


def test_atom_is_valid_rfc4287_for_jing(client: Any, seed: Seeder, tmp_path: Path) -> None:
    assert shutil.which("jing"), "jing is missing: `make feedtools` installs it"
    _story_set(seed)
    seed.story(Member("en", title=HOSTILE, summary=f"<p>{HOSTILE}</p>"), at=T0 + timedelta(hours=1))
    paths = []
    for locale in LOCALES:
        path = tmp_path / f"{locale}.atom"
        path.write_bytes(get(client, "atom", locale=locale).content)
        paths.append(str(path))
    broken = tmp_path / "broken.atom"  # the schema must be able to fail: an entry without its id
    broken.write_bytes(ET.tostring(_drop_first_entry_id(Path(paths[1]).read_bytes())))
    schema = str(SCHEMAS / "atom.rnc")
    ok = subprocess.run(["jing", "-c", schema, *paths], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(["jing", "-c", schema, str(broken)], capture_output=True, text=True)
    assert bad.returncode != 0 and "missing required element" in bad.stdout and ':id"' in bad.stdout


def _drop_first_entry_id(body: bytes) -> ET.Element:
    root = ET.fromstring(body)
    entry = root.find(f"{ATOM_NS}entry")
    assert entry is not None
    entry_id_element = entry.find(f"{ATOM_NS}id")
    assert entry_id_element is not None
    entry.remove(entry_id_element)
    return root


def test_json_feed_matches_the_json_feed_1_1_schema(client: Any, seed: Seeder, settings: Settings) -> None:
    schema = json.loads((SCHEMAS / "jsonfeed-1.1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    _story_set(seed)
    seed.story(Member("en", title=HOSTILE), at=T0 + timedelta(hours=1))
    for locale in LOCALES:
        feed = json.loads(get(client, "json", locale=locale, limit=2).content)
        errors = [e.message for e in validator.iter_errors(feed)]
        assert not errors, (locale, errors)
    broken = dict(feed, items=[{"title": "no id"}])
    assert list(validator.iter_errors(broken))


def test_hostile_text_comes_out_well_formed(client: Any, seed: Seeder) -> None:
    sid = seed.story(
        Member("en", title=HOSTILE, summary=f"<p>{HOSTILE}</p><script>alert(1)</script>"),
        Member("pt-PT", title=HOSTILE + " pt"),
    )
    seed.relate(sid, seed.story(Member("en", title="rel " + HOSTILE), at=T0 - timedelta(hours=1)))
    cleaned = "A & B <b>x</b> ]]>  \u202eRTL\u202c 😀 𝄞 \U000e0001 'q' \"dq\""
    for fmt in FORMATS:
        body = get(client, fmt, locale="en").content
        if fmt == "json":
            feed = json.loads(body)
            titles = [i["title"] for i in feed["items"]]
            content = feed["items"][0]["content_html"]
        else:
            ET.fromstring(body)  # strict XML 1.0
            doc = parsed(body)
            titles = [e.title for e in doc.entries]
            content = doc.entries[0].content[0].value if fmt == "atom" else doc.entries[0].description
        assert titles[0] == cleaned, fmt
        assert "<script" not in content and "alert(1)" not in content


# ---- HTTP ----------------------------------------------------------------------------------------


def test_conditional_get_charset_cache_control_and_gzip(
    client: Any, seed: Seeder, settings: Settings
) -> None:
    for n in range(6):
        seed.story(Member("en", title=f"story {n}", summary="<p>" + "long text " * 50 + "</p>"))
    for fmt, mime in (
        ("rss", "application/rss+xml"),
        ("atom", "application/atom+xml"),
        ("json", "application/feed+json"),
    ):
        r = get(client, fmt, locale="en")
        assert r.headers["content-type"] == f"{mime}; charset=utf-8"
        assert r.headers["cache-control"] == f"public, max-age={settings.cache_max_age_s}"
        assert r.headers["content-encoding"] == "gzip"  # TestClient asks for it; the body is big enough
        etag, modified = r.headers["etag"], r.headers["last-modified"]
        assert client.get(f"/v1/feed.{fmt}?locale=en", headers={"If-None-Match": etag}).status_code == 304
        assert (
            client.get(f"/v1/feed.{fmt}?locale=en", headers={"If-Modified-Since": modified}).status_code
            == 304
        )
        old = "Thu, 01 Jan 2026 00:00:00 GMT"
        assert client.get(f"/v1/feed.{fmt}?locale=en", headers={"If-Modified-Since": old}).status_code == 200
        plain = client.get(f"/v1/feed.{fmt}?locale=en", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == r.content
        assert r.headers["vary"] == "Accept-Language, Accept-Encoding"


def test_accept_language_picks_the_locale_and_filters_apply(client: Any, seed: Seeder) -> None:
    ids = _story_set(seed)
    body = client.get("/v1/feed.atom", headers={"Accept-Language": "ja,en;q=0.5"}).content
    assert ET.fromstring(body).get(XML_LANG) == "ja"
    for fmt in FORMATS:
        got = [e["id"] for e in entries(fmt, get(client, fmt, locale="en", tickers="btc,SOL").content)]
        assert got == [entry_id("en", ids["pt"])]  # the ja story has no version in an en reader's chain
        wide = get(client, fmt, locale="en", tickers="btc,SOL", untranslated="include").content
        assert [e["id"] for e in entries(fmt, wide)] == [entry_id("en", ids["pt"]), entry_id("en", ids["ja"])]
        got = [e["id"] for e in entries(fmt, get(client, fmt, locale="en", outlet="blocktempo").content)]
        assert got == [entry_id("en", ids["pt"])]


def test_hub_link_only_when_a_hub_is_set(settings: Settings, engine: sa.Engine, seed: Seeder) -> None:
    seed.story(Member("en"))
    with make_client(settings, engine) as c:
        assert b"hub" not in get(c, "atom", locale="en").content
    hubbed = settings.model_copy(
        update={"websub_hub": "https://hub.example/", "public_url": "https://news.example"}
    )
    with make_client(hubbed, engine) as c:
        rss, atom = parsed(get(c, "rss", locale="en").content), parsed(get(c, "atom", locale="en").content)
        for doc, fmt in ((rss, "rss"), (atom, "atom")):
            rels = {link["rel"]: link["href"] for link in doc.feed.links}
            assert rels["hub"] == "https://hub.example/"
            assert rels["self"] == f"https://news.example/v1/feed.{fmt}?locale=en"
        feed = json.loads(get(c, "json", locale="en").content)
        assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example/"}]
        assert feed["feed_url"] == "https://news.example/v1/feed.json?locale=en"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"locale": "xx"}, "unknown_locale"),
        ({"locale": "en", "cursor": "tampered"}, "invalid_cursor"),
        ({"locale": "en", "tickers": "B$TC"}, "invalid_tickers"),
        ({"locale": "en", "limit": "0"}, "invalid_parameter"),
        ({"locale": "en", "limit": "abc"}, "invalid_parameter"),
        ({"locale": "en", "limit": "100000"}, "invalid_parameter"),
        ({"locale": "en", "outlet": "nope"}, "unknown_outlet"),
    ],
)
def test_bad_parameters_are_400_in_the_format_asked_for(
    client: Any, params: dict[str, str], code: str
) -> None:
    for fmt in FORMATS:
        r = client.get(f"/v1/feed.{fmt}", params=params)
        assert r.status_code == 400, (fmt, r.text)
        assert "Traceback" not in r.text and r.headers["cache-control"] == "no-store"
        if fmt == "json":
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["error"]["code"] == code
        else:
            assert r.headers["content-type"] == "application/xml; charset=utf-8"
            root = ET.fromstring(r.content)
            assert root.tag == "error" and root.findtext("code") == code and root.findtext("message")


def test_opml_lists_every_locale_in_every_format(client: Any) -> None:
    r = client.get("/v1/feeds.opml")
    assert r.status_code == 200 and r.headers["content-type"] == "text/x-opml; charset=utf-8"
    root = ET.fromstring(r.content)
    assert root.tag == "opml" and root.get("version") == "2.0"
    feeds = [o for o in root.iter("outline") if o.get("xmlUrl")]
    assert len(feeds) == len(LOCALES) * len(FORMATS)
    for locale in LOCALES:
        urls = {o.get("xmlUrl") for o in feeds if o.get("language") == locale}
        assert urls == {f"http://testserver/v1/feed.{fmt}?locale={locale}" for fmt in FORMATS}
    for o in feeds:  # each one is served
        assert client.get(o.get("xmlUrl")).status_code == 200
    assert client.get("/v1/feeds.opml", headers={"If-None-Match": r.headers["etag"]}).status_code == 304


def test_routes_are_documented(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/feed.rss", "/v1/feed.atom", "/v1/feed.json", "/v1/feeds.opml"} <= set(paths)
    assert SEEDS  # the seeded disclaimers are what make_client serves


def test_every_locale_has_its_feed_texts() -> None:
    from api.export import texts

    for table in (texts.TITLE, texts.DESCRIPTION, texts.ORIGINAL, texts.LANGUAGE_NAME):
        assert list(table) == list(LOCALES) and all(v.strip() for v in table.values())

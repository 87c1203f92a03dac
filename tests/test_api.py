"""Contract tests of the read API (api/), on SQLite and PostgreSQL, with rows inserted directly."""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import BaseModel
from sqlmodel import Session
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette's TestClient prefers httpx2; httpx (pinned) works the same for these tests
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from aggregator.appstate import shared_secret
from aggregator.db import make_engine
from aggregator.entries import refresh_story_entries
from aggregator.models import Disclaimer, FeedChange, Item, Outlet, RelatedStory, Source, Story
from aggregator.normalize.markup import sanitize_html
from aggregator.settings import Settings
from api.app import create_app
from api.cursor import FeedPosition, TokenSigner
from api.locales import negotiate
from api.schemas import ChangesPage, FeedPage, StoryDetail
from core.locales import LOCALES

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SEEDS = {("third-party", loc): f"seed third-party {loc}" for loc in LOCALES} | {
    ("none", loc): "" for loc in LOCALES
}


@dataclass
class Member:
    """One item of a seeded story."""

    locale: str
    outlet: str = "gate"
    title: str | None = None
    summary: str = "<p>Summary</p>"
    tickers: list[str] = field(default_factory=list)
    image: str | None = None
    language: str | None = None
    tombstone: bool = False
    minutes: int = 0
    """Published this many minutes after the story's first publication."""


class Seeder:
    """Inserts outlets, sources, stories and items the way ingest and dedupe would leave them: item
    HTML through ingest's sanitizer, the stories' feed entries written in the same transaction."""

    OUTLETS: ClassVar[dict[str, tuple[str, str]]] = {
        "gate": ("Gate News", "third-party"),
        "blocktempo": ("BlockTempo", "none"),
        "coindesk": ("CoinDesk", "third-party"),
    }

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sources: dict[tuple[str, str], int] = {}
        self.serial = 0
        with Session(engine) as s:
            for oid, (name, policy) in self.OUTLETS.items():
                s.add(Outlet(id=oid, name=name, disclaimer_policy=policy))
            s.commit()

    def _source(self, s: Session, outlet: str, locale: str) -> int:
        key = (outlet, locale)
        if key not in self.sources:
            src = Source(url=f"https://{outlet}.example/{locale}/feed", outlet_id=outlet, locale=locale)
            s.add(src)
            s.flush()
            assert src.id is not None
            self.sources[key] = src.id
        return self.sources[key]

    def story(
        self,
        *members: Member,
        at: datetime = T0,
        hidden: bool = False,
        pinned: bool = False,
        original: int = 0,
        **editorial: Any,
    ) -> int:
        """A story whose ``members[original]`` is the canonical item; returns its id."""
        with Session(self.engine) as s:
            story = Story(first_published_at=at, updated_at=at, hidden=hidden, pinned=pinned, **editorial)
            s.add(story)
            s.flush()
            assert story.id is not None
            ids = []
            for m in members:
                self.serial += 1
                n = self.serial
                item = Item(
                    source_id=self._source(s, m.outlet, m.locale),
                    story_id=story.id,
                    identity=hashlib.sha256(f"{n}".encode()).hexdigest(),
                    link=f"https://{m.outlet}.example/{m.locale}/news/{n}",
                    title=m.title if m.title is not None else f"{m.locale} title {n}",
                    summary_html=sanitize_html(m.summary, f"https://{m.outlet}.example/"),
                    published_at=at + timedelta(minutes=m.minutes),
                    image=m.image,
                    locale=m.locale,
                    language=m.language,
                    tickers=m.tickers,
                    content_hash=f"h{n}",
                    tombstone=m.tombstone,
                )
                s.add(item)
                s.flush()
                ids.append(item.id)
            story.canonical_item_id = ids[original] if ids else None
            s.add(story)
            refresh_story_entries(s, [story.id])
            s.commit()
            return story.id

    def relate(self, a: int, b: int, score: float = 0.5) -> None:
        with Session(self.engine) as s:
            s.add(RelatedStory(story_id=a, related_id=b, score=score))
            refresh_story_entries(s, [a, b])
            s.commit()

    def hide(self, story_id: int) -> None:
        with Session(self.engine) as s:
            story = s.get(Story, story_id)
            assert story is not None
            story.hidden = True
            s.add(story)
            refresh_story_entries(s, [story_id])
            s.commit()

    def change(self, story_id: int, change: str = "upsert") -> None:
        with Session(self.engine) as s:
            s.add(FeedChange(story_id=story_id, change=change))
            s.commit()

    def disclaimer(self, policy: str, locale: str, version: int, text: str) -> None:
        with Session(self.engine) as s:
            s.add(Disclaimer(policy=policy, locale=locale, version=version, text=text))
            s.commit()


@pytest.fixture
def seed(engine: sa.Engine) -> Seeder:
    return Seeder(engine)


def make_client(settings: Settings, engine: sa.Engine, **kw: Any) -> TestClient:
    kw.setdefault("seed_disclaimers", SEEDS)
    kw.setdefault("response_cache_s", 0)
    return TestClient(create_app(settings, engine, **kw), raise_server_exceptions=False)


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> Iterator[TestClient]:
    with make_client(settings, engine) as c:
        yield c


def feed(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get("/v1/feed", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def only(client: TestClient, **params: Any) -> dict[str, Any]:
    items = feed(client, **params)["items"]
    assert len(items) == 1, items
    return items[0]


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert "Traceback" not in r.text
    return body["error"]


# ---- entry contract ---------------------------------------------------------------------------


def test_entry_has_every_field(client: TestClient, seed: Seeder) -> None:
    related = seed.story(
        Member("pt-PT", title="Relacionada"), Member("en", outlet="coindesk"), at=T0 - timedelta(hours=2)
    )
    sid = seed.story(
        Member(
            "zh-TW", outlet="blocktempo", title="比特幣", tickers=["BTC"], image="https://img.example/1.png"
        ),
        Member("en", title="Bitcoin", tickers=["ETH"], minutes=30),
        Member(
            "pt-PT",
            title="Bitcoin sobe",
            summary='<p>O <b>BTC</b> &amp; mais<script>alert(1)</script><img src="x" onerror="y()"></p>',
            tickers=["BTC"],
            minutes=45,
        ),
    )
    seed.relate(sid, related, 0.7)
    e = only(client, locale="pt-PT", limit=1)
    assert e["id"] == sid
    assert e["title"] == "Bitcoin sobe"
    assert "<b>BTC</b>" in e["summary"] and "script" not in e["summary"] and "onerror" not in e["summary"]
    assert e["summary_text"] == "O BTC & mais"
    assert e["url"].startswith("https://gate.example/pt-PT/news/")
    assert e["outlet"] == {"id": "gate", "name": "Gate News"}
    assert e["published_at"] == "2026-11-01T12:00:00Z"
    assert e["image"] == "https://img.example/1.png"
    assert e["tickers"] == ["BTC", "ETH"]
    assert e["locale_served"] == "pt-PT" and e["converted"] is None and e["pinned"] is False
    assert e["original"]["outlet"] == {"id": "blocktempo", "name": "BlockTempo"}
    assert e["original"]["locale"] == "zh-TW" and "blocktempo.example/zh-TW" in e["original"]["url"]
    assert [t["locale"] for t in e["translations"]] == ["en", "zh-TW"]
    assert all(t["url"].startswith("https://") for t in e["translations"])
    assert e["related"] == [
        {"id": related, "title": "Relacionada", "url": e["related"][0]["url"], "locale": "pt-PT"}
    ]
    assert e["disclaimer"] == {"text": "seed third-party pt-PT", "version": "seed-1", "locale": "pt-PT"}


def test_page_shape_and_story_ids(client: TestClient, seed: Seeder) -> None:
    ids = [seed.story(Member("en"), at=T0 + timedelta(minutes=i)) for i in range(3)]
    page = feed(client, locale="en")
    assert set(page) == {"items", "next_cursor", "locale_requested"}
    assert page["locale_requested"] == "en" and page["next_cursor"] is None
    assert [e["id"] for e in page["items"]] == ids[::-1]


# ---- locale fallbacks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "locales", "served"),
    [
        ("pt-PT", ["en", "pt-BR"], "pt-BR"),
        ("pt-BR", ["en", "pt-PT"], "pt-PT"),
        ("pt-PT", ["ja", "en"], "en"),
        ("uk", ["ru", "en"], "en"),
        ("es", ["ja", "pt-BR", "en"], "en"),
        ("zh-TW", ["ja", "zh-CN"], "zh-TW"),
        ("en", ["pt-BR", "en"], "en"),
    ],
)
def test_fallback_chain(
    client: TestClient, seed: Seeder, requested: str, locales: list[str], served: str
) -> None:
    seed.story(*(Member(loc, title=f"in {loc}") for loc in locales))
    e = only(client, locale=requested)
    assert e["locale_served"] == served and e["untranslated"] is False
    if served == requested and requested not in locales:
        assert e["converted"] is not None
    else:
        assert e["title"] == f"in {served}" and e["converted"] is None
    assert served not in {t["locale"] for t in e["translations"]}
    assert only(client, locale=requested, untranslated="include") == e


@pytest.mark.parametrize(
    ("requested", "locales", "original", "served"),
    [("fr", ["ar", "ja"], 1, "ja"), ("vi", ["ar", "ja"], 0, "ar"), ("pt-PT", ["zh-TW", "ru"], 0, "zh-TW")],
)
def test_a_story_outside_the_readers_chain_is_left_out_unless_asked_for(
    client: TestClient, seed: Seeder, requested: str, locales: list[str], original: int, served: str
) -> None:
    sid = seed.story(*(Member(loc, title=f"in {loc}") for loc in locales), original=original)
    in_chain = seed.story(Member("en"), at=T0 - timedelta(minutes=1))
    assert [e["id"] for e in feed(client, locale=requested)["items"]] == [in_chain]
    items = feed(client, locale=requested, untranslated="include")["items"]
    assert [e["id"] for e in items] == [sid, in_chain]
    assert items[0]["locale_served"] == served and items[0]["title"] == f"in {served}"
    assert items[0]["untranslated"] is True and items[1]["untranslated"] is False
    assert client.get(f"/v1/stories/{sid}", params={"locale": requested}).json()["untranslated"] is True
    r = client.get("/v1/feed", params={"locale": requested, "untranslated": "sometimes"})
    assert_error(r, 422, "invalid_parameter")


def test_zh_tw_served_from_zh_cn_converted_and_marked(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("zh-CN", title="比特币软件网络", summary="<p>软件</p>"), Member("en"))
    e = only(client, locale="zh-TW")
    assert e["locale_served"] == "zh-TW" and e["converted"] == "s2twp"
    assert e["title"] == "比特幣軟體網路" and e["summary"] == "<p>軟體</p>"
    assert "zh-CN" in {t["locale"] for t in e["translations"]}


def test_zh_cn_served_from_zh_tw_converted(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("zh-TW", title="比特幣"), Member("en"))
    e = only(client, locale="zh-CN")
    assert (e["locale_served"], e["converted"], e["title"]) == ("zh-CN", "t2s", "比特币")


def test_uk_is_never_served_russian(client: TestClient, seed: Seeder) -> None:
    ru_only = seed.story(Member("ru"), at=T0)
    both = seed.story(Member("ru"), Member("ja", minutes=5), at=T0 + timedelta(minutes=1))
    assert feed(client, locale="uk")["items"] == []
    items = feed(client, locale="uk", untranslated="include")["items"]
    assert [e["id"] for e in items] == [both]
    assert items[0]["locale_served"] == "ja"
    assert "ru" not in {t["locale"] for t in items[0]["translations"]}
    assert {e["id"] for e in feed(client, locale="ru")["items"]} == {ru_only, both}
    # asked for by id, the story is still served (its original)
    assert client.get(f"/v1/stories/{ru_only}", params={"locale": "uk"}).json()["locale_served"] == "ru"


def test_original_locale_is_the_last_resort(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("ar", minutes=10), Member("ja"), original=1)
    assert only(client, locale="fr", untranslated="include")["locale_served"] == "ja"


def test_detected_language_beats_a_lying_feed(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("en", language="ru", title="по-русски"), Member("ja", title="日本語"))
    assert only(client, locale="uk", untranslated="include")["locale_served"] == "ja"
    assert only(client, locale="ru")["title"] == "по-русски"


def test_fallback_table_is_configurable(settings: Settings, engine: sa.Engine, seed: Seeder) -> None:
    from api.locales import FALLBACKS, Chain, Step

    seed.story(Member("pt-BR"), Member("en"), Member("es"))
    table = dict(FALLBACKS) | {"pt-PT": Chain(steps=(Step("es"),))}
    with make_client(settings, engine, fallbacks=table) as c:
        assert only(c, locale="pt-PT")["locale_served"] == "es"


# ---- Accept-Language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        (None, "en"),
        ("", "en"),
        ("*", "en"),
        ("pt", "pt-PT"),
        ("pt-br", "pt-BR"),
        ("pt-AO", "pt-PT"),
        ("zh-Hant", "zh-TW"),
        ("zh-HK", "zh-TW"),
        ("zh-Hant-TW", "zh-TW"),
        ("zh", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("de, fr;q=0.3", "fr"),
        ("fr;q=0.5, pt-BR;q=0.9", "pt-BR"),
        ("ja;q=0.8, uk;q=0.8", "ja"),
        ("ru;q=0, uk;q=0.1", "uk"),
        ("xx-YY, q=;;;, en-GB", "en"),
        ("es-419", "es"),
        ("vi;q=abc, ar;q=0.2", "ar"),
    ],
)
def test_accept_language(header: str | None, locale: str) -> None:
    assert negotiate(header) == locale


def test_accept_language_header_is_used_unless_locale_given(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("pt-BR", title="br"), Member("zh-TW", title="tw"))
    r = client.get("/v1/feed", headers={"Accept-Language": "en;q=0.1, zh-Hant;q=0.9"})
    assert r.json()["locale_requested"] == "zh-TW" and r.json()["items"][0]["title"] == "tw"
    assert "Accept-Language" in r.headers["vary"]
    r = client.get("/v1/feed", params={"locale": "PT-br"}, headers={"Accept-Language": "zh-TW"})
    assert r.json()["locale_requested"] == "pt-BR" and r.json()["items"][0]["title"] == "br"


def test_unknown_locale_is_400_listing_valid_ones(client: TestClient) -> None:
    for path in ("/v1/feed", "/v1/feed/changes", "/v1/stories/1"):
        err = assert_error(client.get(path, params={"locale": "pt"}), 400, "unknown_locale")
        assert all(code in err["message"] for code in LOCALES)


# ---- pagination ------------------------------------------------------------------------------


def test_cursor_pages_are_stable_and_complete(client: TestClient, seed: Seeder) -> None:
    ids = []
    for i in range(23):
        # pairs of stories share a timestamp: the id breaks the tie
        ids.append((seed.story(Member("en"), at=T0 + timedelta(minutes=i // 2)), i // 2))
    hidden = seed.story(Member("en"), at=T0 + timedelta(minutes=3))
    seed.hide(hidden)
    expected = [sid for sid, _ in sorted(ids, key=lambda p: (p[1], p[0]), reverse=True)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"locale": "en", "limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = feed(client, **params)
        seen += [e["id"] for e in page["items"]]
        pages += 1
        if pages == 2:
            # a story published meanwhile lands on the first page, never shifts later pages
            seed.story(Member("en"), at=T0 + timedelta(days=1))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and len(set(seen)) == len(seen) and pages == 5


def test_tampered_or_foreign_cursor_is_400(client: TestClient, seed: Seeder) -> None:
    for i in range(3):
        seed.story(Member("en"), at=T0 + timedelta(minutes=i))
    cursor = feed(client, locale="en", limit=1)["next_cursor"]
    assert cursor
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    foreign = TokenSigner("another secret").feed_cursor(FeedPosition(T0, 10**6))
    for bad in (flipped, foreign, "not-a-cursor", "", "%%%", "A" * 500):
        assert_error(client.get("/v1/feed", params={"cursor": bad}), 400, "invalid_cursor")
    assert client.get("/v1/feed", params={"cursor": cursor, "locale": "en"}).status_code == 200


def test_limit_bounds(client: TestClient, settings: Settings, seed: Seeder) -> None:
    for i in range(settings.feed_default_limit + 2):
        seed.story(Member("en"), at=T0 + timedelta(minutes=i))
    assert len(feed(client)["items"]) == settings.feed_default_limit
    assert len(feed(client, limit=settings.feed_max_limit)["items"]) == settings.feed_default_limit + 2
    err = assert_error(
        client.get("/v1/feed", params={"limit": settings.feed_max_limit + 1}), 422, "invalid_parameter"
    )
    assert "limit" in err["message"] and str(settings.feed_max_limit) in err["message"]
    assert_error(client.get("/v1/feed", params={"limit": 0}), 422, "invalid_parameter")
    assert_error(client.get("/v1/feed", params={"limit": "many"}), 422, "invalid_parameter")


# ---- filters and visibility ----------------------------------------------------------------------


def test_tickers_filter(client: TestClient, seed: Seeder) -> None:
    btc = seed.story(Member("en", tickers=["BTC"]), at=T0)
    eth = seed.story(Member("en"), Member("ja", tickers=["ETH", "SOL"]), at=T0 + timedelta(minutes=1))
    seed.story(Member("en", tickers=["BTCB"]), at=T0 + timedelta(minutes=2))
    seed.story(Member("en", tickers=["XRP"]), at=T0 + timedelta(minutes=3))
    assert [e["id"] for e in feed(client, tickers="btc,ETH")["items"]] == [eth, btc]
    assert [e["id"] for e in feed(client, tickers="SOL")["items"]] == [eth]
    assert feed(client, tickers="DOGE")["items"] == []
    for bad in ("BTC;DROP", "B-T-C", "X" * 16, ",".join(f"T{i}" for i in range(21)), "BTC%"):
        assert_error(client.get("/v1/feed", params={"tickers": bad}), 400, "invalid_tickers")


def test_outlet_filter(client: TestClient, seed: Seeder) -> None:
    desk = seed.story(Member("en", outlet="coindesk"), Member("ja"), at=T0)
    seed.story(Member("en"), at=T0 + timedelta(minutes=1))
    seed.story(Member("en", outlet="coindesk", tombstone=True), Member("ja"), at=T0 + timedelta(minutes=2))
    assert [e["id"] for e in feed(client, outlet="coindesk")["items"]] == [desk]
    assert feed(client, outlet="blocktempo")["items"] == []
    assert_error(client.get("/v1/feed", params={"outlet": "nope"}), 400, "unknown_outlet")


def test_hidden_and_tombstoned_are_left_out(client: TestClient, seed: Seeder) -> None:
    hidden = seed.story(Member("en"), at=T0)
    seed.hide(hidden)
    seed.story(Member("en", tombstone=True), at=T0 + timedelta(minutes=1))
    partly = seed.story(
        Member("en", title="gone", tombstone=True),
        Member("ja", title="here", minutes=3),
        at=T0 + timedelta(minutes=2),
    )
    assert feed(client, locale="en")["items"] == []
    items = feed(client, locale="en", untranslated="include")["items"]
    assert [e["id"] for e in items] == [partly]
    assert items[0]["title"] == "here" and items[0]["original"]["locale"] == "ja"
    assert items[0]["translations"] == []
    assert_error(client.get(f"/v1/stories/{hidden}"), 404, "not_found")


def test_pinned_tops_the_first_page_once(client: TestClient, seed: Seeder) -> None:
    pinned = seed.story(Member("en"), at=T0, pinned=True)
    older = seed.story(Member("en"), at=T0 - timedelta(minutes=1))
    newer = seed.story(Member("en"), at=T0 + timedelta(minutes=1))
    items = feed(client)["items"]
    assert [(e["id"], e["pinned"]) for e in items] == [(pinned, True), (newer, False), (older, False)]
    first = feed(client, limit=1)
    assert [e["id"] for e in first["items"]] == [pinned, newer]
    rest = feed(client, limit=1, cursor=first["next_cursor"])
    assert [e["id"] for e in rest["items"]] == [older] and rest["next_cursor"] is None


def test_a_pin_holds_in_its_locale_until_its_end_under_the_page_filters(
    client: TestClient, seed: Seeder
) -> None:
    """Pins are read from the entries: a pin for one locale tops only that locale's first page, an
    ended pin is an ordinary entry, and a filtered first page tops only the pinned stories it lets
    through; an editor's title shows in its locale's entry."""
    now = datetime.now(UTC)
    pt = seed.story(Member("en", tickers=["BTC"]), Member("pt-PT"), at=T0, pinned=True, pinned_locale="pt-PT")
    ended = seed.story(
        Member("en"), at=T0 - timedelta(minutes=2), pinned=True, pinned_until=now - timedelta(hours=1)
    )
    until = seed.story(
        Member("en", tickers=["ETH"]),
        at=T0 - timedelta(minutes=1),
        pinned=True,
        pinned_until=now + timedelta(hours=1),
        titles={"en": "An editor's title"},
    )
    newer = seed.story(Member("en", tickers=["BTC"]), Member("pt-PT"), at=T0 + timedelta(minutes=1))
    en = feed(client, locale="en")["items"]
    assert [(e["id"], e["pinned"]) for e in en] == [
        (until, True),
        (newer, False),
        (pt, False),
        (ended, False),
    ]
    assert en[0]["title"] == "An editor's title"
    assert [(e["id"], e["pinned"]) for e in feed(client, locale="pt-PT")["items"]] == [
        (pt, True),
        (until, True),
        (newer, False),
        (ended, False),
    ]
    assert [e["id"] for e in feed(client, locale="en", tickers="BTC")["items"]] == [newer, pt]
    assert [e["id"] for e in feed(client, locale="pt-PT", tickers="BTC")["items"]] == [pt, newer]
    assert [e["id"] for e in feed(client, locale="en", tickers="ETH")["items"]] == [until]
    assert client.get(f"/v1/stories/{until}", params={"locale": "en"}).json()["pinned"] is True
    assert client.get(f"/v1/stories/{ended}", params={"locale": "en"}).json()["pinned"] is False
    assert client.get(f"/v1/stories/{pt}", params={"locale": "en"}).json()["pinned"] is False


# ---- related and disclaimers -------------------------------------------------------------------


def test_related_in_best_locale_both_ways_without_hidden(client: TestClient, seed: Seeder) -> None:
    a = seed.story(Member("en"), at=T0 + timedelta(minutes=10))
    b = seed.story(Member("zh-CN", title="软件"), at=T0)
    c = seed.story(Member("en"), at=T0 + timedelta(minutes=1))
    d = seed.story(Member("en"), at=T0 + timedelta(minutes=2))
    seed.relate(a, b, 0.9)
    seed.relate(c, a, 0.5)  # stored the other way round
    seed.relate(a, d, 0.8)
    seed.hide(d)
    items = {e["id"]: e for e in feed(client, locale="zh-TW")["items"]}
    rel = items[a]["related"]
    assert [r["id"] for r in rel] == [b, c]
    assert rel[0]["title"] == "軟體" and rel[0]["locale"] == "zh-TW"
    assert [r["id"] for r in items[b]["related"]] == [a]


def test_related_are_the_strongest_few(client: TestClient, seed: Seeder) -> None:
    from aggregator.entries import RELATED_PER_STORY

    a = seed.story(Member("en"), at=T0 + timedelta(hours=1))
    others = [seed.story(Member("en"), at=T0 + timedelta(minutes=i)) for i in range(RELATED_PER_STORY + 3)]
    for i, o in enumerate(others):
        seed.relate(a, o, 0.1 + i / 100)  # later ones relate more strongly
    e = feed(client, locale="en", limit=1)["items"][0]
    assert e["id"] == a
    assert [r["id"] for r in e["related"]] == others[::-1][:RELATED_PER_STORY]


def test_disclaimer_versions(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("ja", outlet="coindesk"), Member("fr", outlet="coindesk"), at=T0)
    seed.story(Member("en", outlet="blocktempo"), at=T0 + timedelta(minutes=1))
    seed.disclaimer("third-party", "ja", 1, "old ja text")
    seed.disclaimer("third-party", "ja", 2, "new ja text")
    items = feed(client, locale="ja")["items"]
    assert items[0]["disclaimer"] is None  # blocktempo's policy is "none"
    assert items[1]["disclaimer"] == {"text": "new ja text", "version": "2", "locale": "ja"}
    assert feed(client, locale="fr")["items"][1]["disclaimer"] == {
        "text": "seed third-party fr",
        "version": "seed-1",
        "locale": "fr",
    }


def test_bundled_disclaimers_are_used_by_default(settings: Settings, engine: sa.Engine, seed: Seeder) -> None:
    from sources.disclaimers import load_disclaimers

    seed.story(Member("vi"))
    with TestClient(create_app(settings, engine, response_cache_s=0)) as c:
        d = only(c, locale="vi")["disclaimer"]
    assert d["text"] == load_disclaimers()[("third-party", "vi")] and d["version"] == "seed-1"


# ---- story detail -------------------------------------------------------------------------------


def test_story_detail(client: TestClient, seed: Seeder) -> None:
    other = seed.story(Member("en"), at=T0 - timedelta(days=1))
    sid = seed.story(
        Member("en", minutes=5, title="copy"),
        Member("zh-TW", outlet="blocktempo", title="原文"),
        Member("pt-PT", minutes=20),
        original=1,
    )
    seed.relate(sid, other)
    r = client.get(f"/v1/stories/{sid}", params={"locale": "zh-TW"})
    assert r.status_code == 200 and "etag" in r.headers
    d = r.json()
    assert d["id"] == sid and d["title"] == "原文" and d["locale_requested"] == "zh-TW"
    assert d["canonical"] == d["original"] and d["canonical"]["locale"] == "zh-TW"
    assert [(m["locale"], m["is_original"]) for m in d["members"]] == [
        ("zh-TW", True),
        ("en", False),
        ("pt-PT", False),
    ]
    assert d["members"][1]["title"] == "copy" and d["members"][1]["outlet"]["id"] == "gate"
    assert d["members"][1]["published_at"] == "2026-11-01T12:05:00Z"
    assert [x["id"] for x in d["related"]] == [other]
    assert_error(client.get("/v1/stories/999999"), 404, "not_found")
    assert_error(client.get("/v1/stories/abc"), 422, "invalid_parameter")
    assert_error(client.get(f"/v1/stories/{2**31}"), 422, "invalid_parameter")


# ---- delta sync ----------------------------------------------------------------------------------


def test_changes_delta(client: TestClient, engine: sa.Engine, seed: Seeder) -> None:
    a = seed.story(Member("en"))
    seed.change(a)
    first = client.get("/v1/feed/changes").json()
    assert first["changes"] == [] and first["has_more"] is False
    b = seed.story(Member("en"), at=T0 + timedelta(minutes=1))
    ru = seed.story(Member("ru"), at=T0 + timedelta(minutes=2))
    seed.change(b)
    seed.change(a)
    seed.change(ru)
    seed.hide(b)
    page = client.get("/v1/feed/changes", params={"since": first["next_since"], "locale": "uk"}).json()
    assert page["changes"] == [
        {"id": b, "change": "removed"},
        {"id": a, "change": "upsert"},
        {"id": ru, "change": "removed"},
    ]
    again = client.get("/v1/feed/changes", params={"since": page["next_since"]}).json()
    assert again["changes"] == [] and again["next_since"] == page["next_since"]
    assert_error(client.get("/v1/feed/changes", params={"since": "bogus"}), 400, "invalid_since")
    cursor_token = TokenSigner(shared_secret(engine)).feed_cursor(FeedPosition(T0, 1))
    assert_error(client.get("/v1/feed/changes", params={"since": cursor_token}), 400, "invalid_since")


# ---- HTTP caching ----------------------------------------------------------------------------------


def test_etag_304_cache_control_vary(client: TestClient, settings: Settings, seed: Seeder) -> None:
    seed.story(Member("en"))
    r = client.get("/v1/feed", params={"locale": "en"})
    etag = r.headers["etag"]
    assert etag == '"' + hashlib.blake2b(r.content, digest_size=12).hexdigest() + '"'
    assert r.headers["cache-control"] == f"public, max-age={settings.cache_max_age_s}"
    assert "Accept-Language" in r.headers["vary"]
    r304 = client.get("/v1/feed", params={"locale": "en"}, headers={"If-None-Match": etag})
    assert r304.status_code == 304 and r304.content == b"" and r304.headers["etag"] == etag
    assert (
        client.get(
            "/v1/feed", params={"locale": "en"}, headers={"If-None-Match": f'"x", W/{etag}'}
        ).status_code
        == 304
    )
    assert (
        client.get("/v1/feed", params={"locale": "en"}, headers={"If-None-Match": '"other"'}).status_code
        == 200
    )
    seed.story(Member("en"), at=T0 + timedelta(minutes=1))
    changed = client.get("/v1/feed", params={"locale": "en"}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_gzip_for_large_responses(client: TestClient, seed: Seeder) -> None:
    for i in range(10):
        seed.story(Member("en", summary="<p>" + "word " * 100 + "</p>"), at=T0 + timedelta(minutes=i))
    plain = client.get("/v1/feed", headers={"Accept-Encoding": "identity"})
    zipped = client.get("/v1/feed", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    assert zipped.json() == plain.json()
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get(
        "/v1/feed", headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    assert again.status_code == 304
    small = client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content


def test_micro_cache_serves_a_built_page_until_it_expires(
    settings: Settings, engine: sa.Engine, seed: Seeder
) -> None:
    seed.story(Member("en"))
    with (
        make_client(settings, engine, response_cache_s=3600) as cached,
        make_client(settings, engine) as fresh,
    ):
        assert len(feed(cached)["items"]) == 1
        seed.story(Member("en"), at=T0 + timedelta(minutes=1))
        assert len(feed(cached)["items"]) == 1
        assert len(feed(cached, limit=5)["items"]) == 2  # another key is built afresh
        assert len(feed(fresh)["items"]) == 2
        assert_error(cached.get("/v1/feed", params={"outlet": "nope"}), 400, "unknown_outlet")
        metrics = cached.get("/metrics").text
        assert 'babelwire_response_cache_total{result="hit"} 1.0' in metrics


def test_repeats_are_answered_before_routing(settings: Settings, engine: sa.Engine, seed: Seeder) -> None:
    seed.story(Member("en", title="en"), Member("zh-TW", title="tw"))
    with make_client(settings, engine, response_cache_s=3600) as c:
        first = c.get("/v1/feed", headers={"Accept-Language": "zh-TW"})
        again = c.get("/v1/feed", headers={"Accept-Language": "zh-TW"})
        other = c.get("/v1/feed", headers={"Accept-Language": "en"})
        assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
        assert again.json()["items"][0]["title"] == "tw" and other.json()["items"][0]["title"] == "en"
        revalidated = c.get(
            "/v1/feed", headers={"Accept-Language": "zh-TW", "If-None-Match": first.headers["etag"]}
        )
        assert revalidated.status_code == 304
        zipped = c.get("/v1/feed", headers={"Accept-Language": "zh-TW", "Accept-Encoding": "gzip"})
        assert zipped.json() == first.json()
        assert_error(c.get("/v1/feed", params={"locale": "xx"}), 400, "unknown_locale")
        assert_error(c.get("/v1/feed", params={"locale": "xx"}), 400, "unknown_locale")
        metrics = c.get("/metrics").text
    assert 'babelwire_http_requests_total{method="GET",route="/v1/feed",status="304"} 1.0' in metrics
    assert 'babelwire_http_requests_total{method="GET",route="/v1/feed",status="200"} 4.0' in metrics
    assert 'babelwire_response_cache_total{result="hit"} 3.0' in metrics


def test_micro_cache_is_off_when_clients_may_not_cache(engine: sa.Engine, settings: Settings) -> None:
    on = settings.model_copy(update={"response_cache_s": 1.0})
    app = create_app(on.model_copy(update={"cache_max_age_s": 0}), engine, seed_disclaimers=SEEDS)
    assert app.state.response_cache.ttl == 0
    assert create_app(on, engine, seed_disclaimers=SEEDS).state.response_cache.ttl == 1.0
    # off by default: kept pages answer repeats (BENCHMARKS.md, bench:api)
    assert create_app(settings, engine, seed_disclaimers=SEEDS).state.response_cache.ttl == 0


# ---- errors, health, metrics, docs -------------------------------------------------------------------


def test_error_shapes(settings: Settings, engine: sa.Engine) -> None:
    app: FastAPI = create_app(settings, engine, seed_disclaimers=SEEDS)

    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert_error(c.get("/nope"), 404, "not_found")
        r = c.post("/v1/feed")
        assert_error(r, 405, "method_not_allowed")
        assert "GET" in r.headers["allow"]
        crash = c.get("/boom")
        assert_error(crash, 500, "internal_error")
        assert "secret internals" not in crash.text


def test_database_down_is_503(settings: Settings, engine: sa.Engine) -> None:
    broken = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    with TestClient(create_app(settings, broken, seed_disclaimers=SEEDS), raise_server_exceptions=False) as c:
        assert_error(c.get("/v1/feed"), 503, "database_unavailable")
        assert_error(c.get("/readyz"), 503, "database_unavailable")
        assert c.get("/healthz").json() == {"status": "ok"}


def test_health_and_readiness(client: TestClient, settings: Settings, db_url: str) -> None:
    from aggregator.migrate import head_revision

    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "revision": head_revision()}


def test_readiness_fails_on_an_unmigrated_database(settings: Settings) -> None:
    fresh = settings.model_copy()
    if settings.is_sqlite:
        fresh = settings.model_copy(
            update={"database_url": settings.database_url.replace(".sqlite", "-empty.sqlite")}
        )
    eng = make_engine(fresh)
    try:
        with make_client(fresh, eng) as c:
            err = assert_error(c.get("/readyz"), 503, "migrations_pending")
            assert "None" in err["message"]
    finally:
        eng.dispose()


def test_metrics_per_app_registry(settings: Settings, engine: sa.Engine) -> None:
    with make_client(settings, engine) as one, make_client(settings, engine) as two:
        one.get("/v1/feed")
        one.get("/v1/feed")
        one.get("/v1/stories/5")
        two.get("/healthz")
        text = one.get("/metrics").text
        assert 'babelwire_http_requests_total{method="GET",route="/v1/feed",status="200"} 2.0' in text
        assert 'route="/v1/stories/{story_id}",status="404"' in text
        assert "/healthz" not in text
        assert 'route="/healthz",status="200"} 1.0' in two.get("/metrics").text


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/v1/feed",
        "/v1/stories/{story_id}",
        "/v1/feed/changes",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(paths)
    assert "/bench/ceiling" not in paths
    feed_op = paths["/v1/feed"]["get"]
    assert feed_op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FeedPage")
    assert feed_op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    limit = next(p for p in feed_op["parameters"] if p["name"] == "limit")
    assert limit["schema"]["anyOf"][0]["maximum"] == 100
    entry = spec["components"]["schemas"]["FeedEntry"]
    undocumented = [
        (name, field)
        for name, model in spec["components"]["schemas"].items()
        for field, prop in model.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not undocumented
    assert entry["properties"]["converted"]["examples"] == [None, "s2twp"]
    assert client.get("/docs").status_code == 200


def test_bodies_are_what_the_documented_models_give(client: TestClient, seed: Seeder) -> None:
    """The routes build plain dicts and encode them once (no pydantic on the hot path); each body must
    still be exactly what the documented response model validates and serializes to."""
    other = seed.story(Member("zh-CN", title="软件"), at=T0 - timedelta(hours=1))
    sid = seed.story(
        Member(
            "zh-TW", outlet="blocktempo", title="比特幣", tickers=["BTC"], image="https://img.example/1.png"
        ),
        Member("en", outlet="coindesk", tickers=["ETH"], minutes=30),
        Member("pt-BR", summary="<p>a &amp; <b>b</b><script>x</script></p>", minutes=45),
    )
    seed.relate(sid, other, 0.4)
    seed.story(Member("en", tombstone=True), Member("ja"), at=T0 + timedelta(seconds=1, microseconds=250))
    seed.disclaimer("third-party", "en", 3, "editors' en text")
    seed.change(sid)
    bodies: list[tuple[type[BaseModel], bytes]] = [
        (FeedPage, client.get("/v1/feed", params={"locale": locale, "limit": 2, "untranslated": u}).content)
        for locale in ("pt-PT", "zh-CN", "zh-TW", "uk", "en")
        for u in ("include", "exclude")
    ]
    page = json.loads(bodies[0][1])
    assert page["next_cursor"] and page["items"][0]["published_at"] == "2026-11-01T12:00:01.000250Z"
    bodies.append((FeedPage, client.get("/v1/feed", params={"cursor": page["next_cursor"]}).content))
    bodies += [
        (StoryDetail, client.get(f"/v1/stories/{sid}", params={"locale": locale}).content)
        for locale in ("zh-CN", "ru")
    ]
    first_sync = client.get("/v1/feed/changes").content
    bodies.append((ChangesPage, first_sync))
    token = json.loads(first_sync)["next_since"]
    seed.change(other, "removed")
    bodies.append((ChangesPage, client.get("/v1/feed/changes", params={"since": token}).content))
    for model, body in bodies:
        assert model.model_validate_json(body).model_dump_json().encode() == body, body[:300]
    assert any(b'"converted":"t2s"' in body for _, body in bodies)
    assert any(b"editors' en text" in body for _, body in bodies)


def test_ceiling_route(client: TestClient, seed: Seeder) -> None:
    seed.story(Member("en"))
    r = client.get("/bench/ceiling")
    assert r.status_code == 200 and r.content == client.get("/v1/feed", params={"locale": "en"}).content
    assert client.get("/bench/ceiling", headers={"If-None-Match": r.headers["etag"]}).status_code == 304

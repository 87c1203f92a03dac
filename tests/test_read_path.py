"""The read path's contract (issue 17), on SQLite and PostgreSQL: the disclaimer follows the reader,
served HTML is what ingest stored, derived summaries, filters through their indexes, the shared
cursor secret. Rows are seeded as ingest and dedupe leave them (``tests.test_api.Seeder``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from aggregator.appstate import shared_secret
from aggregator.models import Item, StoryEntry, StoryTicker
from aggregator.normalize import normalize_entry
from aggregator.normalize.entry import LEAD_CHARS, lead_sentences
from aggregator.parse import RawEntry
from aggregator.settings import Settings
from tests.test_api import SEEDS, T0, Member, Seeder, feed, make_client, only


def test_the_disclaimer_follows_the_reader_not_the_article(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    seed.story(Member("en", title="English only"))
    seeds = {k: v for k, v in SEEDS.items() if k != ("third-party", "pt-BR")}
    with make_client(settings, engine, seed_disclaimers=seeds) as c:
        e = only(c, locale="pt-PT")
        assert e["locale_served"] == "en"
        assert e["disclaimer"] == {"text": "seed third-party pt-PT", "version": "seed-1", "locale": "pt-PT"}
        # no text for pt-BR: the next locale of the pt-BR reader's chain (pt-PT), not the article's
        assert only(c, locale="pt-BR")["disclaimer"]["locale"] == "pt-PT"
        # an editors' version for the reader's locale beats the bundled one
        seed.disclaimer("third-party", "ja", 4, "editors' ja")
        seed.disclaimer("third-party", "en", 9, "editors' en")
        ja = only(c, locale="ja", untranslated="include")
        assert ja["disclaimer"] == {"text": "editors' ja", "version": "4", "locale": "ja"}
        sid = ja["id"]
        detail = c.get(f"/v1/stories/{sid}", params={"locale": "ja"}).json()
        assert detail["disclaimer"] == ja["disclaimer"]


def test_served_html_is_exactly_what_ingest_stored(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    sid = seed.story(Member("en", summary='<p>See <a href="https://x.example/a?utm_source=z">this</a>.</p>'))
    with Session(engine) as s:
        stored = s.exec(sa.select(Item.summary_html).where(Item.story_id == sid)).one()[0]  # type: ignore[call-overload]
    assert 'rel="noopener noreferrer nofollow"' in stored and "utm_source" not in stored
    with make_client(settings, engine) as c:
        e = only(c, locale="en")
    assert e["summary"] == stored
    assert e["summary_text"] == "See this ."


def test_an_entry_with_content_but_no_summary_gets_its_first_sentences() -> None:
    first = "Bitcoin rose 5% on Monday."
    rest = " ".join(f"Sentence number {i} adds more detail to the story." for i in range(20))
    raw = RawEntry(
        guid="g", link="https://news.example/a", title="T", summary_html="", content_html=f"<p>{first} {rest}</p>",
        published=T0, updated=None, author=None, image=None, alternates=(), source_url=None, tags=(),
    )  # fmt: skip
    entry = normalize_entry(raw, feed_url="https://news.example/feed", locale="en", fetched_at=T0)
    assert entry.summary_text.startswith(first + " Sentence number 0")
    assert len(entry.summary_text) <= LEAD_CHARS and entry.summary_text.endswith(".")
    assert entry.summary_html == f"<p>{entry.summary_text}</p>"
    assert "<p>" in entry.content_html  # the content itself is kept whole
    with_summary = normalize_entry(
        RawEntry(**{**raw.__dict__, "summary_html": "<p>Given &amp; kept</p>"}),
        feed_url="https://news.example/feed", locale="en", fetched_at=T0,
    )  # fmt: skip
    assert (with_summary.summary_html, with_summary.summary_text) == (
        "<p>Given &amp; kept</p>",
        "Given & kept",
    )
    assert lead_sentences("比特币上涨。以太坊下跌！其他平稳。") == "比特币上涨。以太坊下跌！其他平稳。"
    assert lead_sentences("x" * 1000).endswith("…") and len(lead_sentences("x" * 1000)) <= LEAD_CHARS + 1


def test_filters_match_many_few_none_and_page(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    ids = []
    for i in range(12):
        tickers = ["BTC"] + (["ETH"] if i % 5 == 0 else [])
        outlet = "coindesk" if i % 4 == 0 else "gate"
        ids.append(seed.story(Member("en", outlet=outlet, tickers=tickers), at=T0 + timedelta(minutes=i)))
    newest_first = ids[::-1]
    c = make_client(settings, engine)

    def all_ids(**params: object) -> list[int]:
        out: list[int] = []
        cursor = None
        while True:
            page = feed(c, locale="en", limit=2, **params, **({"cursor": cursor} if cursor else {}))
            out += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return out

    assert all_ids(tickers="BTC") == newest_first
    assert all_ids(tickers="eth") == [s for i, s in zip(range(12), ids, strict=True) if i % 5 == 0][::-1]
    assert all_ids(tickers="ETH,BTC") == newest_first  # a story matching both comes once
    assert all_ids(tickers="NOPE") == []  # unknown ticker: empty, not an error
    assert all_ids(outlet="coindesk") == [s for i, s in zip(range(12), ids, strict=True) if i % 4 == 0][::-1]
    assert all_ids(outlet="coindesk", tickers="ETH") == [ids[0]]
    assert all_ids(outlet="blocktempo") == []
    # the filter rows follow the story: hidden, it leaves the filter's index too
    seed.hide(ids[0])
    with Session(engine) as s:
        assert s.get(StoryTicker, (ids[0], "BTC")) is None
        assert s.get(StoryEntry, ("en", ids[0])) is None
    assert ids[0] not in all_ids(tickers="ETH")


def test_without_a_configured_secret_every_app_shares_one_kept_in_the_database(
    settings: Settings, engine: sa.Engine
) -> None:
    seed = Seeder(engine)
    for i in range(3):
        seed.story(Member("en"), at=T0 + timedelta(minutes=i))
    assert settings.cursor_secret is None
    with make_client(settings, engine) as first:
        cursor = feed(first, locale="en", limit=1)["next_cursor"]
    with make_client(settings, engine) as second:  # another process, or the same after a restart
        r = second.get("/v1/feed", params={"locale": "en", "limit": 1, "cursor": cursor})
        assert r.status_code == 200, r.text
    secret = shared_secret(engine)
    assert len(secret) == 64 and shared_secret(engine) == secret
    configured = Settings(
        database_url=settings.database_url, cursor_secret="a configured secret, long enough"
    )
    with make_client(configured, engine) as third:
        r = third.get("/v1/feed", params={"locale": "en", "limit": 1, "cursor": cursor})
        assert r.status_code == 400


def test_a_database_from_before_the_entries_gets_them_at_start(settings: Settings, engine: sa.Engine) -> None:
    seed = Seeder(engine)
    sid = seed.story(Member("pt-BR"), at=datetime(2026, 1, 1, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM storyentry"))
        conn.execute(sa.text("DELETE FROM appstate"))
    with make_client(settings, engine) as c:
        assert only(c, locale="pt-PT")["id"] == sid

"""The Google Reader API (``/greader``) against the client flows of ``../shared/research/greader.md``:
NetNewsWire / Reeder / Read You (``stream/items/ids`` + ``stream/items/contents`` in 150-id batches,
continuation to the end), Fluent Reader (``stream/contents`` with no stream, ``canonical[0].href``),
newsboat ≥ 2.24 (``stream/contents/feed%2F1?n=`` without ``output=json``, integer ``published``),
the auth and write rules, and state kept in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from sqlmodel import Session

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from aggregator.editorial import CLI
from aggregator.editorial.keys import create_key, revoke_key
from aggregator.entries import refresh_story_entries, touch_pages
from aggregator.models import Item, Story
from aggregator.settings import Settings
from api.app import create_app
from api.caching import PageCache
from api.greader.ids import ITEM_PREFIX, READ, READING_LIST, STARRED, long_id, parse_item_id
from tests.processes import wait_until
from tests.test_api import SEEDS, T0, Member, Seeder

ROOT = Path(__file__).resolve().parents[1]
API = "/greader/reader/api/0"
FORM = "application/x-www-form-urlencoded"
OUTLETS = ("gate", "blocktempo", "coindesk")


@dataclass
class World:
    engine: sa.Engine
    settings: Settings
    client: TestClient
    keys: dict[str, tuple[str, str]]
    """name → (key, locale)."""
    english: list[int]
    """The stories an ``en`` reader is served (reading list), any order."""

    def login(self, name: str) -> dict[str, str]:
        key = self.keys[name][0]
        r = self.client.post("/greader/accounts/ClientLogin", data={"Email": name, "Passwd": key})
        assert r.status_code == 200, r.text
        auth = re.search(r"^Auth=(.+)$", r.text, re.M)
        assert auth
        return {"Authorization": f"GoogleLogin auth={auth.group(1)}"}


@contextmanager
def told(world: World) -> Iterator[None]:
    """Around a write made as another process would make it (straight into the database, or through
    this app: a NOTIFY follows its local effect): on PostgreSQL, wait until its change has been told
    to this app — its NOTIFY arrives milliseconds after the commit, and what the app keeps is
    answered until then. A probe's own change is sent after the block and waited for: notifications
    arrive in commit order. SQLite reads the changes at the next request."""
    yield
    if world.engine.dialect.name != "postgresql":
        return
    reader = world.client.app.state.reader  # type: ignore[attr-defined]
    probe: PageCache[bool] = PageCache(1)
    probe.follow(reader.pages)
    assert probe.put("probe", probe.mark(), True, page_span=("gr:probe", None, None))
    with world.engine.begin() as conn:
        touch_pages(conn, [("gr:probe", None, None)])
    wait_until(lambda: probe.get("probe") is None, "the write's NOTIFY to arrive", 20, poll_s=0.01)


def post_form(client: TestClient, url: str, pairs: list[tuple[str, str]], headers: dict[str, str]) -> Any:
    """A form POST with repeated names, as clients send ``i=…&i=…``."""
    content = urlencode(pairs, safe=":,/")
    return client.post(url, content=content, headers=headers | {"Content-Type": FORM})


def new_client(settings: Settings, engine: sa.Engine) -> TestClient:
    app = create_app(settings, engine, seed_disclaimers=SEEDS, response_cache_s=0)
    return TestClient(app, raise_server_exceptions=False)


def seed_stories(seed: Seeder, count: int) -> list[int]:
    """``count`` English stories (every third outlet in turn, every fourth about BTC, every fifth
    with a pt-BR translation by Gate), one minute apart, their entries written once at the end."""
    ids = []
    with Session(seed.engine) as s:
        for n in range(count):
            at = T0 + timedelta(minutes=n)
            story = Story(first_published_at=at, updated_at=at)
            s.add(story)
            s.flush()
            assert story.id is not None
            versions = [("en", OUTLETS[n % 3], 0)] + ([("pt-BR", "gate", 30)] if n % 5 == 0 else [])
            for locale, outlet, minutes in versions:
                item = Item(
                    source_id=seed._source(s, outlet, locale),
                    story_id=story.id,
                    identity=f"{story.id}-{locale}",
                    link=f"https://{outlet}.example/{locale}/news/{story.id}",
                    title=f"{locale} title {story.id}",
                    summary_html=f"<p>Summary {story.id} ({locale})</p>",
                    published_at=at + timedelta(minutes=minutes),
                    locale=locale,
                    tickers=["BTC"] if n % 4 == 0 else [],
                    content_hash=f"h{story.id}-{locale}",
                )
                s.add(item)
                s.flush()
                if story.canonical_item_id is None:
                    story.canonical_item_id = item.id
            ids.append(story.id)
        refresh_story_entries(s, ids)
        s.commit()
    return ids


@pytest.fixture
def world(engine: sa.Engine, settings: Settings) -> Iterator[World]:
    seed = Seeder(engine)
    english = seed_stories(seed, 320)
    seed.story(Member("ja", outlet="gate"), at=T0 + timedelta(hours=1))  # not in the en chain
    keys = {}
    with Session(engine) as s:
        for name, locale in (("alice", "en"), ("bruno", "pt-PT")):
            keys[name] = (create_key(s, CLI, "reader", name, locale)[1], locale)
        s.commit()
    with new_client(settings, engine) as client:
        yield World(engine, settings, client, keys, english)


def ids_of(world: World, headers: dict[str, str], n: int = 1000, **params: Any) -> list[int]:
    """Every id of a stream, following continuation the way NetNewsWire and Read You do."""
    out: list[int] = []
    c: str | None = None
    for _ in range(1000):
        query = {"output": "json", "n": str(n), **params} | ({"c": c} if c else {})
        r = world.client.get(f"{API}/stream/items/ids", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out += [int(ref["id"]) for ref in body["itemRefs"]]
        c = body.get("continuation")
        if c is None:
            assert "continuation" not in body
            return out
        assert isinstance(c, str) and c
    raise AssertionError("continuation never ended")


def contents(world: World, headers: dict[str, str], ids: list[int]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(0, len(ids), 150):
        batch = ids[i : i + 150]
        form = [("i", long_id(sid)) for sid in batch] + [("T", "x")]
        r = post_form(world.client, f"{API}/stream/items/contents?output=json", form, headers)
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body["id"], str) and isinstance(body["updated"], int)
        assert [parse_item_id(x["id"]) for x in body["items"]] == batch
        items += body["items"]
    return items


def v1_feed(world: World, locale: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    cursor = None
    while True:
        params = {"locale": locale, "limit": "100"} | ({"cursor": cursor} if cursor else {})
        page = world.client.get("/v1/feed", params=params).json()
        out |= {e["id"]: e for e in page["items"]}
        cursor = page["next_cursor"]
        if not cursor:
            return out


def subscriptions(world: World, headers: dict[str, str]) -> dict[str, str]:
    r = world.client.get(f"{API}/subscription/list", headers=headers)
    assert r.status_code == 200
    return {s["id"]: s["title"] for s in r.json()["subscriptions"]}


def test_client_login_tokens_and_user_info(world: World) -> None:
    c = world.client
    key = world.keys["alice"][0]
    r = c.post(
        "/greader/accounts/ClientLogin", data={"Email": "alice", "Passwd": key, "source": "newsboat0.000000"}
    )
    assert r.status_code == 200
    lines = dict(line.split("=", 1) for line in r.text.strip().split("\n"))
    assert set(lines) == {"SID", "LSID", "Auth"}
    assert re.fullmatch(r"[^=\s]+", lines["Auth"])
    headers = {"Authorization": f"GoogleLogin auth={lines['Auth']}"}
    by_get = c.get(
        "/greader/accounts/ClientLogin", params={"Email": "alice", "Passwd": key, "output": "json"}
    )
    assert by_get.json()["Auth"] == lines["Auth"]
    for bad in (
        {"Email": "alice", "Passwd": key + "x"},
        {"Email": "bruno", "Passwd": key},
        {"Email": "alice"},
    ):
        r = c.post("/greader/accounts/ClientLogin", data=bad)
        assert r.status_code == 401 and r.headers["Google-Bad-Token"] == "true"
        assert "Auth=" not in r.text
    token = c.get(f"{API}/token", headers=headers)
    assert token.status_code == 200 and token.text and not token.text.endswith("\n") and "=" not in token.text
    info = c.get(f"{API}/user-info", headers=headers).json()
    assert info["userName"] == "alice"
    for auth in (None, "GoogleLogin auth=1/" + "0" * 40, "Bearer " + key, "GoogleLogin auth=garbage"):
        r = c.get(f"{API}/user-info", headers={"Authorization": auth} if auth else {})
        assert r.status_code == 401 and r.headers["Google-Bad-Token"] == "true"
    with told(world), Session(world.engine) as s:
        revoke_key(s, CLI, int(lines["Auth"].split("/")[0]))
        s.commit()
    assert c.get(f"{API}/user-info", headers=headers).status_code == 401


def test_failed_logins_are_rate_limited(world: World) -> None:
    key = world.keys["alice"][0]
    for _ in range(10):
        assert (
            world.client.post(
                "/greader/accounts/ClientLogin", data={"Email": "alice", "Passwd": "bw_no"}
            ).status_code
            == 401
        )
    r = world.client.post("/greader/accounts/ClientLogin", data={"Email": "alice", "Passwd": key})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_subscriptions_are_outlets_and_labels_are_tickers(world: World) -> None:
    h = world.login("alice")
    r = world.client.get(f"{API}/subscription/list", headers=h)  # no output=json
    subs = r.json()["subscriptions"]
    assert {s["title"] for s in subs} == {"Gate News", "BlockTempo", "CoinDesk"}
    assert all(re.fullmatch(r"feed/[1-9][0-9]*", s["id"]) and s["categories"] == [] for s in subs)
    again = world.client.get(f"{API}/subscription/list", headers=h | {"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304
    tags = world.client.get(f"{API}/tag/list?output=json", headers=h).json()["tags"]
    assert {"id": STARRED} in tags
    assert {"id": "user/-/label/BTC", "label": "BTC", "type": "tag"} in tags
    assert world.client.get(f"{API}/subscription/list", headers=h).json()["subscriptions"] == subs  # stable


def test_netnewswire_flow_ids_then_contents_in_150_batches(world: World) -> None:
    h = world.login("alice")
    served = v1_feed(world, "en")
    assert sorted(served) == sorted(world.english)
    ids = ids_of(world, h, n=100, s=READING_LIST)
    assert len(ids) == len(set(ids)) == len(world.english)
    assert set(ids) == set(world.english)
    unread = ids_of(world, h, s=READING_LIST, xt=READ)
    assert unread == ids
    subs = subscriptions(world, h)
    items = contents(world, h, ids)
    for item in items:
        sid = parse_item_id(item["id"])
        assert sid is not None and item["id"] == f"{ITEM_PREFIX}{sid:016x}"
        entry = served[sid]
        assert item["title"] == entry["title"]
        assert item["canonical"][0]["href"] == entry["url"]
        assert isinstance(item["published"], int)
        assert (
            item["origin"]["streamId"] in subs and subs[item["origin"]["streamId"]] == entry["outlet"]["name"]
        )
        assert item["summary"]["content"].startswith(entry["summary"])
        disclaimer = entry["disclaimer"]
        if disclaimer:
            assert item["summary"]["content"].endswith(f"<small>{disclaimer['text']}</small></p>")
        assert READING_LIST in item["categories"] and READ not in item["categories"]
        assert ("user/-/label/BTC" in item["categories"]) == ("BTC" in entry["tickers"])
    # A Portuguese reader: served through pt-BR where a story has it, the pt-PT disclaimer.
    hb = world.login("bruno")
    pt = v1_feed(world, "pt-PT")
    pt_ids = ids_of(world, hb, s=READING_LIST)
    assert set(pt_ids) == set(pt)
    for item in contents(world, hb, pt_ids):
        entry = pt[parse_item_id(item["id"]) or 0]
        assert item["title"] == entry["title"]
        assert "seed third-party pt-PT" in item["summary"]["content"] or not entry["disclaimer"]


def test_contents_gzip_body_is_the_plain_body_and_follows_state(world: World) -> None:
    """``items/contents`` compressed from cached per-item pieces: the gzip body (read by the gzip
    module and by a raw zlib stream, as HTTP clients do) is byte for byte the plain body; its ETag
    and bytes change when a flag does; a repeat gives the same bytes (the top-level ``updated``, the
    time of the response, aside)."""
    import gzip
    import zlib

    h = world.login("alice")
    ids = ids_of(world, h, s=READING_LIST)[:150]
    pairs = [("i", long_id(sid)) for sid in ids]

    def fetch(encoding: str) -> tuple[bytes, str, str]:
        r = world.client.post(
            f"{API}/stream/items/contents",
            content=urlencode(pairs),
            headers=h | {"Content-Type": FORM, "Accept-Encoding": encoding},
        )
        assert r.status_code == 200, r.text
        return r.content, r.headers.get("content-encoding", ""), r.headers["etag"]

    plain, coding, tag = fetch("identity")
    assert coding == "" and len(json_items(plain)) == 150
    raw = world.client.stream  # the gzip bytes as sent: httpx would decode them
    with raw(
        "POST",
        f"{API}/stream/items/contents",
        content=urlencode(pairs),
        headers=h | {"Content-Type": FORM, "Accept-Encoding": "gzip"},
    ) as r:
        packed = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and r.headers["etag"] != tag
    assert timeless(gzip.decompress(packed)) == timeless(plain)
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert timeless(stream.decompress(packed) + stream.flush()) == timeless(plain)
    assert stream.eof and not stream.unused_data
    again, _, tag_again = fetch("identity")
    assert timeless(again) == timeless(plain) and (tag_again == tag) == (again == plain)
    world.client.post(f"{API}/edit-tag", data={"i": str(ids[7]), "a": STARRED, "T": "x"}, headers=h)
    starred, _, tag_starred = fetch("identity")
    assert tag_starred != tag and STARRED in json_items(starred)[7]["categories"]
    with raw("POST", f"{API}/stream/items/contents", content=urlencode(pairs),
             headers=h | {"Content-Type": FORM, "Accept-Encoding": "gzip"}) as r:  # fmt: skip
        assert timeless(gzip.decompress(b"".join(r.iter_raw()))) == timeless(starred)


def timeless(body: bytes) -> bytes:
    return re.sub(rb'^\{"id":("[^"]*"),"updated":[0-9]+,', rb'{"id":\1,"updated":0,', body)


def json_items(body: bytes) -> list[dict[str, Any]]:
    import json

    return list(json.loads(body)["items"])


def test_item_ids_in_every_client_form_mark_read_and_star(world: World) -> None:
    h = world.login("alice")
    a, b, c, d, e = world.english[:5]
    forms = [
        long_id(a),  # newsboat, NetNewsWire
        f"{ITEM_PREFIX}{b:x}",  # older NetNewsWire: unpadded
        f"{c:016x}",  # Reeder: bare 16 hex
        str(d),  # Read You, Liferea
        str(e - 2**64),  # Fluent Reader: signed 64-bit (as a negative here, never for real ids)
    ]
    assert [parse_item_id(f) for f in forms] == [a, b, c, d, e]
    assert parse_item_id("0") is None and parse_item_id("x" * 16) is None
    r = post_form(
        world.client, f"{API}/edit-tag", [("i", f) for f in forms] + [("a", READ), ("ac", "edit")], h
    )
    assert r.status_code == 200 and r.content == b"OK"
    assert sorted(ids_of(world, h, s=READ)) == sorted([a, b, c, d, e])
    assert set(ids_of(world, h, s=READING_LIST, it=READ)) == {a, b, c, d, e}
    assert len(ids_of(world, h, s=READING_LIST, xt=READ)) == len(world.english) - 5
    world.client.post(f"{API}/edit-tag", data={"i": str(a), "a": STARRED}, headers=h)
    world.client.post(
        f"{API}/edit-tag",
        data={"i": str(b), "r": READ, "a": "user/-/state/com.google/kept-unread"},
        headers=h,
    )
    assert ids_of(world, h, s=STARRED) == [a]
    assert set(ids_of(world, h, s="user/1/state/com.google/read")) == {a, c, d, e}
    item = contents(world, h, [a])[0]
    assert READ in item["categories"] and STARRED in item["categories"]
    # Another key's state is its own.
    assert ids_of(world, world.login("bruno"), s=READ) == []


def test_write_tokens(world: World) -> None:
    h = world.login("alice")
    token = world.client.get(f"{API}/token", headers=h).text
    sid = str(world.english[0])
    cases = [
        (h, {}, 200),  # Fluent Reader: header, no T
        (h, {"T": "x"}, 200),  # Reeder
        (h, {"T": ""}, 200),  # FeedMe
        ({}, {"T": token}, 200),  # a Miniflux-style client: T alone
        ({}, {"T": token + "\n"}, 200),  # Read You / newsboat send the body back as is
        ({}, {"T": "1/" + "0" * 40}, 401),
        ({}, {}, 401),
        ({"Authorization": "GoogleLogin auth=nope"}, {"T": token}, 401),
    ]
    for headers, extra, status in cases:
        r = world.client.post(f"{API}/edit-tag", data={"i": sid, "a": READ, **extra}, headers=headers)
        assert r.status_code == status, (headers, extra, r.text)
        if status == 200:
            assert r.content == b"OK"
        else:
            assert r.headers["Google-Bad-Token"] == "true"


def test_fluent_reader_stream_contents_without_a_stream(world: World) -> None:
    h = world.login("alice")
    seen: list[int] = []
    c = None
    while True:
        params = {"output": "json", "n": "125"} | ({"c": c} if c else {})
        body = world.client.get(f"{API}/stream/contents", params=params, headers=h).json()
        assert body["id"] == READING_LIST
        for item in body["items"]:
            assert item["canonical"][0]["href"].startswith("https://")
            seen.append(parse_item_id(item["id"]) or 0)
        c = body.get("continuation")
        if not c:
            break
    assert len(seen) == len(set(seen)) == len(world.english)
    oldest = world.client.get(f"{API}/stream/contents", params={"n": "3", "r": "o"}, headers=h).json()[
        "items"
    ]
    assert [parse_item_id(i["id"]) for i in oldest] == world.english[:3]


def test_newsboat_224_stream_contents_of_a_feed_without_output(world: World) -> None:
    h = world.login("alice")
    subs = subscriptions(world, h)
    total = 0
    for feed in subs:
        url = f"{API}/stream/contents/{feed.replace('/', '%2F')}?n=1000"
        r = world.client.get(url, headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        items = r.json()["items"]
        assert all(i["origin"]["streamId"] == feed and type(i["published"]) is int for i in items)
        raw = world.client.get(f"{API}/stream/contents/{feed}?n=1000", headers=h).json()["items"]
        assert raw == items
        total += len(items)
    assert total == len(world.english)  # each story in exactly one feed
    first = next(iter(subs))
    one = world.client.get(f"{API}/stream/contents/{first.replace('/', '%2F')}?n=1", headers=h).json()[
        "items"
    ][0]
    world.client.post(f"{API}/edit-tag", data={"i": one["id"], "a": READ, "T": "x"}, headers=h)
    again = world.client.get(f"{API}/stream/contents/{first.replace('/', '%2F')}?n=1", headers=h).json()[
        "items"
    ][0]
    assert "user/-/state/com.google/read" in again["categories"]


def test_mark_all_as_read_and_unread_counts(world: World) -> None:
    h = world.login("alice")
    counts = world.client.get(f"{API}/unread-count?output=json", headers=h).json()
    by_id = {u["id"]: u["count"] for u in counts["unreadcounts"]}
    assert by_id[READING_LIST] == len(world.english) == counts["max"]
    feed = next(iter(subscriptions(world, h)))
    r = world.client.post(f"{API}/mark-all-as-read", data={"s": feed, "T": "x"}, headers=h)
    assert r.content == b"OK"
    after = {
        u["id"]: u["count"] for u in world.client.get(f"{API}/unread-count", headers=h).json()["unreadcounts"]
    }
    assert feed not in after or after[feed] == 0
    assert after[READING_LIST] == len(world.english) - by_id[feed]
    # ts before every story was stored: nothing more is marked.
    world.client.post(f"{API}/mark-all-as-read", data={"s": READING_LIST, "ts": "1000000000"}, headers=h)
    assert len(ids_of(world, h, s=READING_LIST, xt=READ)) == after[READING_LIST]
    world.client.post(
        f"{API}/mark-all-as-read",
        data={"s": READING_LIST, "ts": str(int(datetime.now(UTC).timestamp()) + 5)},
        headers=h,
    )
    assert ids_of(world, h, s=READING_LIST, xt=READ) == []


def unread_counts(world: World, headers: dict[str, str]) -> dict[str, tuple[int, int]]:
    """stream id → (unread count, newest item µs) from ``unread-count``."""
    r = world.client.get(f"{API}/unread-count?output=json", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    out = {u["id"]: (u["count"], int(u["newestItemTimestampUsec"])) for u in body["unreadcounts"]}
    assert body["max"] == out[READING_LIST][0]
    return out


def test_unread_counts_per_feed_and_label_match_the_streams(world: World) -> None:
    """Every feed and label ``unread-count`` lists has the count of unread ids its own stream gives
    (an independent statement), before and after reads from another device, per story and whole
    labels; the reading list is the sum of the feeds."""
    h = world.login("alice")

    def check() -> dict[str, tuple[int, int]]:
        counts = unread_counts(world, h)
        feeds = [s for s in counts if s.startswith("feed/")]
        labels = [s for s in counts if s.startswith("user/-/label/")]
        assert set(feeds) <= set(subscriptions(world, h)) and "user/-/label/BTC" in labels
        for stream in feeds + labels + [READING_LIST]:
            assert counts[stream][0] == len(ids_of(world, h, s=stream, xt=READ)), stream
        assert counts[READING_LIST][0] == sum(counts[f][0] for f in feeds)
        return counts

    before = check()
    btc = ids_of(world, h, s="user/-/label/BTC")
    assert before["user/-/label/BTC"][0] == len(btc) == len(world.english) // 4
    assert before[READING_LIST][1] == max(n for _, n in before.values())
    other = h | {"User-Agent": "second device"}
    plain = next(sid for sid in world.english if sid not in btc)
    post_form(
        world.client,
        f"{API}/edit-tag",
        [("a", READ), ("T", "x"), *(("i", str(i)) for i in [*btc[:3], plain])],
        other,
    )
    after = check()
    assert after["user/-/label/BTC"][0] == len(btc) - 3
    assert after[READING_LIST][0] == len(world.english) - 4
    world.client.post(f"{API}/mark-all-as-read", data={"s": "user/-/label/BTC", "T": "x"}, headers=h)
    done = check()
    assert done["user/-/label/BTC"][0] == 0
    assert done[READING_LIST][0] == len(world.english) - len(btc) - 1


def test_ot_and_nt_filter_on_when_the_story_was_stored(world: World) -> None:
    h = world.login("alice")
    old, new = world.english[:10], world.english[10:]
    with world.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE story SET stored_at = :at WHERE id IN (" + ",".join(map(str, old)) + ")"),
            {"at": datetime(2020, 1, 1)},
        )
    cut = str(int(datetime(2021, 1, 1, tzinfo=UTC).timestamp()))
    # Every story was published in 2026; ot on publication would keep all of them.
    assert set(ids_of(world, h, s=READING_LIST, ot=cut)) == set(new)
    assert set(ids_of(world, h, s=READING_LIST, nt=cut)) == set(old)


def test_routes_errors_and_slashes(world: World) -> None:
    h = world.login("alice")
    key = world.keys["alice"][0]
    c = world.client
    assert c.get(f"{API}/no-such-endpoint", headers=h).status_code == 404
    assert (
        c.post(
            f"{API}/subscription/edit", data={"ac": "subscribe", "s": "feed/https://x"}, headers=h
        ).status_code
        == 501
    )
    assert (
        c.post(f"{API}/subscription/quickadd", data={"quickadd": "https://x"}, headers=h).status_code == 501
    )
    r = c.post("/greader//accounts/ClientLogin", data={"Email": "alice", "Passwd": key})
    assert r.status_code == 200 and "Auth=" in r.text
    assert c.get("/greader//reader/api/0//subscription/list", headers=h).status_code == 200
    for params in ({"n": "ten"}, {"c": "garbage"}, {"ot": "yesterday"}, {"s": "feed/https://x.example/rss"}):
        r = c.get(f"{API}/stream/items/ids", params=params, headers=h)
        assert r.status_code == 400 and "error" in r.json()
    assert c.get(f"{API}/stream/items/ids", params={"c": "null"}, headers=h).status_code == 200
    assert c.get(f"{API}/stream/items/ids", params={"s": "feed/999"}, headers=h).json() == {"itemRefs": []}


def test_state_and_tokens_survive_a_restart(world: World, settings: Settings) -> None:
    h = world.login("alice")
    a = world.english[3]
    world.client.post(f"{API}/edit-tag", data={"i": long_id(a), "a": STARRED}, headers=h)
    world.client.post(f"{API}/edit-tag", data={"i": long_id(a), "a": READ}, headers=h)
    from aggregator.db import make_engine

    engine = make_engine(settings)
    try:
        with new_client(settings, engine) as client:
            r = client.get(f"{API}/stream/items/ids", params={"s": STARRED}, headers=h)
            assert r.status_code == 200 and [int(x["id"]) for x in r.json()["itemRefs"]] == [a]
            body = client.get(f"{API}/stream/items/ids", params={"s": READ}, headers=h).json()
            assert [int(x["id"]) for x in body["itemRefs"]] == [a]
    finally:
        engine.dispose()


def test_keys_create_with_a_locale_on_the_command_line(db_url: str, engine: sa.Engine) -> None:
    env = {"BABELWIRE_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(
        [sys.executable, "main.py", "keys", "create", "--role", "reader", "--name", "alice", "--locale", "pt-pt"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "pt-PT" in ok.stdout and ok.stdout.strip().splitlines()[-1].startswith("bw_")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, locale FROM apikey")).all() == [("alice", "pt-PT")]
    bad = subprocess.run(
        [sys.executable, "main.py", "keys", "create", "--role", "reader", "--locale", "xx-YY"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "unknown locale" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_admin_api_creates_reader_keys_with_a_locale(world: World) -> None:
    with Session(world.engine) as s:
        admin = create_key(s, CLI, "admin", "root")[1]
        s.commit()
    auth = {"Authorization": f"Bearer {admin}"}
    r = world.client.post(
        "/v1/admin/keys", json={"role": "reader", "name": "carla", "locale": "ja"}, headers=auth
    )
    assert r.status_code in (200, 201), r.text
    assert r.json()["locale"] == "ja"
    world.keys["carla"] = (r.json()["key"], "ja")
    assert world.client.get(f"{API}/user-info", headers=world.login("carla")).json()["userName"] == "carla"
    bad = world.client.post("/v1/admin/keys", json={"role": "reader", "locale": "klingon"}, headers=auth)
    assert bad.status_code == 400 and "unknown locale" in bad.json()["error"]["message"]


def test_migration_fills_served_outlets_and_store_times(db_url: str) -> None:
    """A database with entries written before 0030_greader: the migration names each entry's served
    outlet (from the stored entry) and each story's store time (its members' first fetch)."""
    from alembic import command

    from aggregator.db import make_engine
    from aggregator.migrate import alembic_config, upgrade

    engine = make_engine(Settings(database_url=db_url))
    try:
        cfg = alembic_config(db_url)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0010_editorial")
        fetched = datetime(2026, 5, 1, 8, 0)
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO outlet (id, name, disclaimer_policy) VALUES ('gate', 'Gate', 'none')")
            )
            conn.execute(
                sa.text(
                    "INSERT INTO source (id, url, outlet_id, locale, enabled, next_check_at, interval_s,"
                    " error_count, created_at) VALUES (1, 'https://g.example/f', 'gate', 'en', true, :t, 900, 0, :t)"
                ),
                {"t": fetched},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO story (id, first_published_at, updated_at, hidden, pinned)"
                    " VALUES (7, :p, :p, false, false), (8, :p, :p, false, false)"
                ),
                {"p": datetime(2026, 4, 1)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO item (id, source_id, story_id, identity, title, summary_html, content_html, text,"
                    " published_at, fetched_at, updated_at, locale, tickers, links, content_hash, tombstone,"
                    " summary_text) VALUES (1, 1, 7, 'a', 't', '', '', '', :p, :f, :f, 'en', '[]', '{}', 'h',"
                    " false, '')"
                ),
                {"p": datetime(2026, 4, 1), "f": fetched},
            )
            body = '{"id":7,"title":"t","outlet":{"id":"gate","name":"Gate"},"pinned":false,"related":[]'
            conn.execute(
                sa.text(
                    "INSERT INTO storyentry (locale, story_id, published_at, reach, policy, body)"
                    " VALUES ('en', 7, :p, 0, 'none', :b)"
                ),
                {"p": datetime(2026, 4, 1), "b": body},
            )
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT outlet_id FROM storyentry")).scalar() == "gate"
            stored: dict[int, Any] = {
                r[0]: r[1] for r in conn.execute(sa.text("SELECT id, stored_at FROM story"))
            }
        assert {k: str(v)[:16] for k, v in stored.items()} == {7: "2026-05-01 08:00", 8: "2026-04-01 00:00"}
    finally:
        engine.dispose()

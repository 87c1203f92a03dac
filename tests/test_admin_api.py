"""The admin API on SQLite and PostgreSQL: keys and roles, every story action, the audit log, and
that each edit shows at once in the public API and survives re-polls and re-runs of dedupe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.db import session_scope
from aggregator.dedupe.corpus import load_corpus
from aggregator.editorial.review import export_labels
from aggregator.settings import Settings
from tests.feedserver import FeedServer
from tests.newsroom import (
    FIXTURES,
    FOUNDATION_ES,
    LUMEN_EN,
    LUMEN_ES,
    LUMEN_JA,
    LUMEN_PT,
    RIDGE_EN,
    Newsroom,
    open_newsroom,
)


@pytest.fixture
def room(engine: sa.Engine, settings: Settings) -> Iterator[Newsroom]:
    with FeedServer() as server:
        yield open_newsroom(engine, settings, server)


@pytest.fixture
def client(room: Newsroom) -> Iterator[Any]:
    # the default response cache is on: edits must show through it at once
    with room.client() as c:
        yield c


def error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"]


def feed_ids(client: Any, locale: str = "en") -> list[int]:
    """Every listed story, those without a version in the reader's languages included."""
    r = client.get("/v1/feed", params={"locale": locale, "untranslated": "include"})
    assert r.status_code == 200
    return [e["id"] for e in r.json()["items"]]


def test_no_key_bad_key_and_wrong_role(client: Any, room: Newsroom) -> None:
    story = room.story_of(LUMEN_EN)
    split = f"/v1/admin/stories/{story}/split"
    error(client.post(split, json={"url": LUMEN_PT}), 401, "unauthorized")
    error(
        client.post(split, json={"url": LUMEN_PT}, headers={"Authorization": "Bearer bw_nope"}),
        401,
        "unauthorized",
    )
    error(
        client.post(split, json={"url": LUMEN_PT}, headers={"Authorization": "Basic eDp5"}),
        401,
        "unauthorized",
    )
    error(client.post(split, json={"url": LUMEN_PT}, headers=room.auth("reader")), 403, "forbidden")
    error(client.get("/v1/admin/keys", headers=room.auth("editor")), 403, "forbidden")
    error(client.get("/v1/admin/audit"), 401, "unauthorized")
    assert client.get("/v1/admin/audit", headers=room.auth("reader")).status_code == 200
    assert client.get(f"/v1/admin/stories/{story}", headers=room.auth("reader")).status_code == 200
    assert client.get("/v1/admin/keys", headers=room.auth("admin")).status_code == 200
    assert room.members(story) == {LUMEN_EN, LUMEN_PT, LUMEN_JA, LUMEN_ES}  # nothing was done


def test_revoking_a_key_takes_effect_at_once_in_another_app(room: Newsroom) -> None:
    with room.client() as one, room.client() as two:
        created = one.post(
            "/v1/admin/keys", json={"role": "editor", "name": "bob"}, headers=room.auth("admin")
        )
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["id"]
        bob = {"Authorization": f"Bearer {key}"}
        assert two.get("/v1/admin/stories", headers=bob).status_code == 200
        listed = one.get("/v1/admin/keys", headers=room.auth("admin")).json()
        assert all("key" not in k and "key_hash" not in k for k in listed)
        assert {"bob", "admin-alice"} <= {k["name"] for k in listed}
        assert one.delete(f"/v1/admin/keys/{key_id}", headers=room.auth("admin")).status_code == 200
        error(two.get("/v1/admin/stories", headers=bob), 401, "unauthorized")
        error(one.delete(f"/v1/admin/keys/{key_id}", headers=room.auth("admin")), 409, "conflict")
        error(one.delete("/v1/admin/keys/999", headers=room.auth("admin")), 404, "not_found")


def test_split_shows_at_once_and_survives_repolls_and_rededupe(client: Any, room: Newsroom) -> None:
    story = room.story_of(LUMEN_EN)
    assert feed_ids(client, "pt-PT").count(story) == 1  # cached now
    r = client.post(f"/v1/admin/stories/{story}/split", json={"url": LUMEN_PT}, headers=room.auth("editor"))
    assert r.status_code == 200, r.text
    alone = r.json()["story_id"]
    assert alone != story and [m["url"] for m in r.json()["detail"]["members"]] == [LUMEN_PT]
    assert alone in feed_ids(client, "pt-PT") and story in feed_ids(client, "en")
    detail = client.get(f"/v1/stories/{alone}", params={"locale": "pt-PT"}).json()
    assert [m["url"] for m in detail["members"]] == [LUMEN_PT]
    assert {m["url"] for m in client.get(f"/v1/stories/{story}").json()["members"]} == {
        LUMEN_EN,
        LUMEN_JA,
        LUMEN_ES,
    }
    # a second poll (the feed changed) and a dedupe run from scratch keep the split
    room.serve("/wire/en.xml", (FIXTURES / "wire-en.xml").read_bytes().replace(b"240 funds", b"250 funds"))
    room.poll()
    room.redo_dedupe()
    assert room.members(room.story_of(LUMEN_PT)) == {LUMEN_PT}
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_JA, LUMEN_ES}
    error(
        client.post(
            f"/v1/admin/stories/{room.story_of(LUMEN_PT)}/split",
            json={"url": LUMEN_PT},
            headers=room.auth("editor"),
        ),
        409,
        "conflict",
    )


def test_merge_back_after_split_and_move(client: Any, room: Newsroom) -> None:
    editor = room.auth("editor")
    story = room.story_of(LUMEN_EN)
    alone = client.post(f"/v1/admin/stories/{story}/split", json={"url": LUMEN_PT}, headers=editor).json()[
        "story_id"
    ]
    r = client.post(f"/v1/admin/stories/{story}/merge", json={"story_id": alone}, headers=editor)
    assert r.status_code == 200, r.text
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_PT, LUMEN_JA, LUMEN_ES}
    assert alone not in feed_ids(client, "pt-PT")
    error(client.get(f"/v1/stories/{alone}"), 404, "not_found")
    # move the ja member to the Ridge story; both survive a dedupe run from scratch
    ridge = room.story_of(RIDGE_EN)
    r = client.post(
        f"/v1/admin/stories/{story}/move", json={"url": LUMEN_JA, "story_id": ridge}, headers=editor
    )
    assert r.status_code == 200, r.text
    assert room.members(ridge) == {RIDGE_EN, LUMEN_JA}
    room.redo_dedupe()
    assert room.members(room.story_of(RIDGE_EN)) == {RIDGE_EN, LUMEN_JA}
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_PT, LUMEN_ES}
    error(
        client.post(f"/v1/admin/stories/{ridge}/merge", json={"story_id": ridge}, headers=editor),
        400,
        "bad_request",
    )
    error(
        client.post(f"/v1/admin/stories/{ridge}/merge", json={"story_id": 99999}, headers=editor),
        404,
        "not_found",
    )
    error(
        client.post(f"/v1/admin/stories/{ridge}/split", json={"url": LUMEN_PT}, headers=editor),
        404,
        "not_found",
    )
    error(
        client.post(f"/v1/admin/stories/{ridge}/split", json={"link": LUMEN_PT}, headers=editor),
        422,
        "invalid_parameter",
    )


def test_original_hide_pin_and_title(client: Any, room: Newsroom) -> None:
    editor = room.auth("editor")
    story, ridge = room.story_of(LUMEN_EN), room.story_of(RIDGE_EN)
    entry = client.get(f"/v1/stories/{story}").json()
    assert entry["original"]["url"] == LUMEN_EN
    assert (
        client.post(f"/v1/admin/stories/{story}/original", json={"url": LUMEN_JA}, headers=editor).status_code
        == 200
    )
    assert client.get(f"/v1/stories/{story}").json()["original"]["url"] == LUMEN_JA

    foundation = room.story_of(FOUNDATION_ES)
    assert feed_ids(client) == [foundation, story, ridge]
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = client.post(f"/v1/admin/stories/{ridge}/pin", json={"until": until, "locale": "en"}, headers=editor)
    assert r.status_code == 200, r.text
    assert feed_ids(client) == [ridge, foundation, story]
    top = client.get("/v1/feed", params={"locale": "en"}).json()["items"][0]
    assert top["pinned"] is True
    assert feed_ids(client, "pt-PT") == [foundation, story, ridge]  # pinned for en only
    error(
        client.post(f"/v1/admin/stories/{ridge}/pin", json={"until": "2020-01-01T00:00:00Z"}, headers=editor),
        400,
        "bad_request",
    )
    error(
        client.post(f"/v1/admin/stories/{ridge}/pin", json={"locale": "xx"}, headers=editor),
        400,
        "bad_request",
    )

    r = client.put(
        f"/v1/admin/stories/{story}/title",
        json={"locale": "en", "title": "Lumen lists on Harbor"},
        headers=editor,
    )
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/stories/{story}").json()["title"] == "Lumen lists on Harbor"

    assert client.post(f"/v1/admin/stories/{story}/hide", headers=editor).status_code == 200
    assert story not in feed_ids(client)
    error(client.get(f"/v1/stories/{story}"), 404, "not_found")
    # everything holds through a re-poll and a dedupe run from scratch
    room.poll()
    room.redo_dedupe()
    story, ridge = room.story_of(LUMEN_EN), room.story_of(RIDGE_EN)
    # another process: it reads the editorial generation on every hit here (0.25 s apart by default)
    with room.client(editorial_check_s=0.0) as fresh:
        foundation = room.story_of(FOUNDATION_ES)
        assert feed_ids(fresh) == [ridge, foundation]
        assert client.post(f"/v1/admin/stories/{story}/unhide", headers=editor).status_code == 200
        assert client.post(f"/v1/admin/stories/{ridge}/unpin", headers=editor).status_code == 200
        assert feed_ids(fresh) == [foundation, story, ridge]
        entry = fresh.get(f"/v1/stories/{story}").json()
        assert entry["title"] == "Lumen lists on Harbor" and entry["original"]["url"] == LUMEN_JA
        assert entry["pinned"] is False
        assert (
            fresh.get(f"/v1/stories/{story}", params={"locale": "pt-PT"})
            .json()["title"]
            .startswith("Harbor Exchange lista")
        )


def test_every_action_is_audited_with_its_key_name(client: Any, room: Newsroom) -> None:
    editor, reader = room.auth("editor"), room.auth("reader")
    story = room.story_of(LUMEN_EN)
    client.post(f"/v1/admin/stories/{story}/split", json={"url": LUMEN_PT}, headers=editor)
    client.post(f"/v1/admin/stories/{story}/hide", headers=editor)
    client.post(
        f"/v1/admin/stories/{story}/split", json={"url": "https://nowhere.example/x"}, headers=editor
    )  # 404
    page = client.get("/v1/admin/audit", params={"limit": 1}, headers=reader).json()
    assert len(page["items"]) == 1 and page["next"] is not None
    newest = page["items"][0]
    assert newest["action"] == "story.hide" and newest["actor"] == "editor-alice"
    assert newest["before"]["hidden"] is False and newest["after"]["hidden"] is True
    rest = client.get(
        "/v1/admin/audit", params={"before": page["next"], "action": "story.split"}, headers=reader
    ).json()
    assert [e["action"] for e in rest["items"]] == ["story.split"]
    assert LUMEN_PT in rest["items"][0]["before"]["members"]
    assert rest["items"][0]["after"]["new_story"]["members"] == [LUMEN_PT]
    every = client.get("/v1/admin/audit", params={"limit": 500}, headers=reader).json()["items"]
    assert [e["action"] for e in every].count("story.split") == 1  # the failed one left no row
    assert {e["actor"] for e in every} >= {"editor-alice", "cli"}


# ---- review queue ------------------------------------------------------------------------------


def test_review_queue_confirm_and_correct(client: Any, room: Newsroom, tmp_path: Any) -> None:
    reader, editor = room.auth("reader"), room.auth("editor")
    queue = client.get("/v1/admin/review", headers=reader).json()
    keys = [e["key"] for e in queue]
    # the es merge was made on figures and names alone; the declared pt/ja merges are not guesses
    assert LUMEN_ES in keys and LUMEN_PT not in keys and LUMEN_JA not in keys
    entry = next(e for e in queue if e["key"] == LUMEN_ES)
    assert entry["kind"] == "merge" and entry["margin"] == round(entry["score"] - entry["threshold"], 4)
    assert [abs(e["margin"]) for e in queue] == sorted(abs(e["margin"]) for e in queue)
    related = next(e for e in queue if e["kind"] == "related")
    error(
        client.post(f"/v1/admin/review/{LUMEN_ES}", json={"verdict": "confirm"}, headers=reader),
        403,
        "forbidden",
    )
    r = client.post(f"/v1/admin/review/{LUMEN_ES}", json={"verdict": "confirm"}, headers=editor)
    assert r.status_code == 200, r.text
    assert LUMEN_ES not in [e["key"] for e in client.get("/v1/admin/review", headers=reader).json()]
    error(
        client.post(f"/v1/admin/review/{LUMEN_ES}", json={"verdict": "confirm"}, headers=editor),
        404,
        "not_found",
    )
    # correcting a related pair merges the two stories
    lumen, foundation = room.story_of(LUMEN_EN), room.story_of(FOUNDATION_ES)
    r = client.post(f"/v1/admin/review/{related['key']}", json={"verdict": "correct"}, headers=editor)
    assert r.status_code == 200, r.text
    assert room.story_of(FOUNDATION_ES) == room.story_of(LUMEN_EN) in (lumen, foundation)
    actions = [e["action"] for e in client.get("/v1/admin/audit", headers=reader).json()["items"]]
    assert actions[:3] == ["review.correct", "story.merge", "review.confirm"]
    # the reviewed stories become eval/ corpus files the corpus loader reads
    with session_scope(room.engine) as s:
        assert export_labels(s, tmp_path / "labels") == 1
    docs = load_corpus(tmp_path / "labels")
    assert {d.doc.locale for d in docs} == {"en", "pt-PT", "ja", "es"}
    assert len({d.story for d in docs}) == 1 and sum(d.original for d in docs) == 1


# ---- sources and disclaimers -------------------------------------------------------------------


def test_sources_admin(client: Any, room: Newsroom) -> None:
    admin, editor, reader = room.auth("admin"), room.auth("editor"), room.auth("reader")
    health = client.get("/v1/admin/sources", headers=reader).json()
    assert len(health) == 4
    wire = next(s for s in health if s["outlet"] == "wire")
    assert wire["last_status"] == 200 and wire["error_count"] == 0 and len(wire["daily"]) == 14
    new = {"url": "https://new.example/feed.xml", "outlet": "newco", "locale": "fr"}
    error(client.post("/v1/admin/sources", json=new, headers=editor), 403, "forbidden")
    r = client.post("/v1/admin/sources", json=new, headers=admin)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    error(client.post("/v1/admin/sources", json=new, headers=admin), 409, "conflict")
    error(client.post("/v1/admin/sources", json={**new, "url": "ftp://x"}, headers=admin), 400, "bad_request")
    error(
        client.post(
            "/v1/admin/sources", json={**new, "url": "https://x.example/", "locale": "xx"}, headers=admin
        ),
        400,
        "bad_request",
    )
    r = client.patch(f"/v1/admin/sources/{sid}", json={"title": "New Co", "locale": "es"}, headers=admin)
    assert r.json()["title"] == "New Co" and r.json()["locale"] == "es"
    assert client.post(f"/v1/admin/sources/{sid}/disable", headers=admin).json()["enabled"] is False
    error(client.post(f"/v1/admin/sources/{sid}/poll", headers=admin), 409, "conflict")
    assert client.post(f"/v1/admin/sources/{sid}/enable", headers=admin).json()["enabled"] is True
    assert client.post(f"/v1/admin/sources/{sid}/poll", headers=admin).status_code == 200
    error(client.post("/v1/admin/sources/9999/poll", headers=admin), 404, "not_found")
    exported = client.get("/v1/admin/sources/opml", headers=reader)
    assert exported.status_code == 200 and b"https://new.example/feed.xml" in exported.content
    opml = exported.content.replace(b"https://new.example/feed.xml", b"https://other.example/feed.xml")
    r = client.post("/v1/admin/sources/opml", content=opml, headers={**admin, "Content-Type": "text/x-opml"})
    assert r.json() == {"added": 1, "already_present": 4}
    error(client.post("/v1/admin/sources/opml", content=b"<opml", headers=admin), 400, "bad_request")
    r = client.post("/v1/admin/sources/catalogue", json={"outlet": "gate", "locale": "ar"}, headers=admin)
    assert r.json() == {"added": 1, "already_present": 0}
    error(
        client.post("/v1/admin/sources/catalogue", json={"outlet": "nope"}, headers=admin), 400, "bad_request"
    )
    assert len(client.get("/v1/admin/sources", headers=reader).json()) == 7
    actions = [
        e["action"]
        for e in client.get("/v1/admin/audit", params={"limit": 9}, headers=reader).json()["items"]
    ]
    assert actions == [
        "source.catalogue", "source.import", "source.poll_now", "source.enable", "source.disable",
        "source.update", "source.add", "key.create", "key.create",
    ]  # fmt: skip


def test_disclaimers_publish_new_versions(client: Any, room: Newsroom) -> None:
    editor, reader = room.auth("editor"), room.auth("reader")
    overview = client.get("/v1/admin/disclaimers", headers=reader).json()
    assert overview["policies"]["third-party"]["ar"]["version"] == 0
    assert "gate" in overview["outlets"]["third-party"]
    lumen = room.story_of(LUMEN_PT)
    entry = client.get(f"/v1/stories/{lumen}", params={"locale": "pt-PT"}).json()
    assert entry["disclaimer"]["version"] == "seed-1"
    error(
        client.post(
            "/v1/admin/disclaimers",
            json={"policy": "third-party", "locale": "pt-PT", "text": "x"},
            headers=reader,
        ),
        403,
        "forbidden",
    )
    for n in (1, 2):
        r = client.post(
            "/v1/admin/disclaimers",
            json={"policy": "third-party", "locale": "pt-PT", "text": f"Conteúdo de terceiros v{n}"},
            headers=editor,
        )
        assert r.status_code == 201 and r.json()["version"] == n
    entry = next(
        e for e in client.get("/v1/feed", params={"locale": "pt-PT"}).json()["items"] if e["id"] == lumen
    )
    assert entry["disclaimer"] == {"text": "Conteúdo de terceiros v2", "version": "2", "locale": "pt-PT"}
    error(
        client.post(
            "/v1/admin/disclaimers", json={"policy": "nope", "locale": "en", "text": "x"}, headers=editor
        ),
        400,
        "bad_request",
    )
    error(
        client.post(
            "/v1/admin/disclaimers", json={"policy": "none", "locale": "en", "text": "x"}, headers=editor
        ),
        400,
        "bad_request",
    )
    audit = client.get("/v1/admin/audit", params={"action": "disclaimer.publish"}, headers=reader).json()[
        "items"
    ]
    assert audit[0]["before"]["version"] == 1 and audit[0]["after"]["version"] == 2


# ---- command line ------------------------------------------------------------------------------


def test_cli_keys_catalogue_and_labels(db_url: str, tmp_path: Any) -> None:
    from tests.test_cli import run

    assert run(db_url, "migrate").returncode == 0
    made = run(db_url, "keys", "create", "--role", "editor", "--name", "carol")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("bw_") and len(key) > 40
    listed = run(db_url, "keys", "list")
    assert "carol\teditor" in listed.stdout and key not in listed.stdout and key[:10] in listed.stdout
    with sa.create_engine(db_url).connect() as c:
        stored = c.execute(sa.text("SELECT key_hash FROM apikey")).scalar()
    assert stored != key and key not in str(stored) and len(str(stored)) == 64
    revoked = run(db_url, "keys", "revoke", "1")
    assert revoked.returncode == 0 and "revoked key 1" in revoked.stdout
    again = run(db_url, "keys", "revoke", "1")
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "Traceback" not in again.stderr
    bad = run(db_url, "keys", "create", "--role", "root")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    sub = run(db_url, "sources", "add", "--catalogue", "--outlet", "gate", "--locale", "ja")
    assert sub.returncode == 0 and "subscribed 1 catalogue feeds" in sub.stdout, sub.stderr
    every = run(db_url, "sources", "add", "--catalogue", "--locale", "ja")
    assert every.returncode == 0 and "(1 already present)" in every.stdout
    assert "https://www.gate.com/ja/news/rss" in run(db_url, "sources", "list").stdout
    nope = run(db_url, "sources", "add", "--catalogue", "--outlet", "nope")
    assert nope.returncode == 2 and "unknown catalogue outlet" in nope.stderr
    half = run(db_url, "sources", "add", "https://x.example/feed")
    assert half.returncode == 2 and "Traceback" not in half.stderr
    labels = run(db_url, "eval", "export-labels", str(tmp_path / "labels"))
    assert labels.returncode == 0 and "wrote 0 labelled events" in labels.stdout


def test_review_a_non_merge_that_came_close(client: Any, room: Newsroom) -> None:
    """A ``new`` decision whose nearest candidate scored under its bar (as the clusterer stores it,
    see test_dedupe_cluster) is in the queue; correcting it moves the item to that candidate's story."""
    from sqlmodel import Session, select

    from aggregator.models import Item, MergeDecision

    with Session(room.engine) as s:
        foundation = s.exec(select(Item).where(Item.link == FOUNDATION_ES)).one()
        lumen = s.exec(select(Item).where(Item.link == LUMEN_EN)).one()
        decision = s.exec(select(MergeDecision).where(MergeDecision.item_id == foundation.id)).one()
        assert decision.kind == "new"
        decision.signals = {"nearest": {"item": lumen.id, "score": 0.7, "threshold": 0.72}}
        s.add(decision)
        s.commit()
    queue = client.get("/v1/admin/review", headers=room.auth("reader")).json()
    entry = queue[0]  # margin -0.02: the most uncertain
    assert entry["kind"] == "new" and entry["key"] == FOUNDATION_ES and entry["margin"] == -0.02
    r = client.post(
        f"/v1/admin/review/{FOUNDATION_ES}", json={"verdict": "correct"}, headers=room.auth("editor")
    )
    assert r.status_code == 200, r.text
    assert room.story_of(FOUNDATION_ES) == room.story_of(LUMEN_EN)

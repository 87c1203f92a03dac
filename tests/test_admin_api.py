"""The admin API on SQLite and PostgreSQL: keys and roles, every story action, the audit log, and
that each edit shows at once in the public API and survives re-polls and re-runs of dedupe."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.settings import Settings
from tests.feedserver import FeedServer
from tests.newsroom import FIXTURES, LUMEN_EN, LUMEN_JA, LUMEN_PT, RIDGE_EN, Newsroom, open_newsroom


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
    r = client.get("/v1/feed", params={"locale": locale})
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
    assert room.members(story) == {LUMEN_EN, LUMEN_PT, LUMEN_JA}  # nothing was done


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
    assert {m["url"] for m in client.get(f"/v1/stories/{story}").json()["members"]} == {LUMEN_EN, LUMEN_JA}
    # a second poll (the feed changed) and a dedupe run from scratch keep the split
    room.serve("/wire/en.xml", (FIXTURES / "wire-en.xml").read_bytes().replace(b"240 funds", b"250 funds"))
    room.poll()
    room.redo_dedupe()
    assert room.members(room.story_of(LUMEN_PT)) == {LUMEN_PT}
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_JA}
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
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_PT, LUMEN_JA}
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
    assert room.members(room.story_of(LUMEN_EN)) == {LUMEN_EN, LUMEN_PT}
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

    assert feed_ids(client) == [story, ridge]
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = client.post(f"/v1/admin/stories/{ridge}/pin", json={"until": until, "locale": "en"}, headers=editor)
    assert r.status_code == 200, r.text
    assert feed_ids(client) == [ridge, story]
    top = client.get("/v1/feed", params={"locale": "en"}).json()["items"][0]
    assert top["pinned"] is True
    assert feed_ids(client, "pt-PT")[0] == story  # pinned for en only
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
    with room.client() as fresh:
        assert feed_ids(fresh) == [ridge]
        assert client.post(f"/v1/admin/stories/{story}/unhide", headers=editor).status_code == 200
        assert client.post(f"/v1/admin/stories/{ridge}/unpin", headers=editor).status_code == 200
        assert feed_ids(fresh) == [story, ridge]
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

"""What the Google Reader API keeps between requests is never stale (SQLite and PostgreSQL).

* Rendered items are kept per process and checked against the entry's stamp
  (``storyentry.stamp``, drawn anew by every write of the entry) and their context (disclaimers,
  feeds): a re-poll that changes a story, an editor's title and an editor's disclaimer each show
  in the next ``stream/items/contents``.
* ``stream/items/ids``, ``unread-count`` and whole ``stream/items/contents`` answers are kept per key
  until a change of the key's locale or of the key's flags is told (``FeedReader.sync_pages``: read
  on SQLite, NOTIFY-ed on PostgreSQL): another key's marks keep them, the key's own marks (from
  another device or another process) drop them.
* Checked tokens are kept until an editor's action is told: a revoked key is refused on the next
  request (on PostgreSQL, from another process, once the NOTIFY has arrived).

On PostgreSQL a write made straight into the database (as another process would) is waited for
until its NOTIFY has arrived (``told``): what the app keeps is answered until then, by design.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, col

from aggregator.editorial import CLI
from aggregator.editorial.disclaimers import publish
from aggregator.editorial.keys import create_key, revoke_key
from aggregator.editorial.stories import set_title
from aggregator.entries import refresh_story_entries
from aggregator.models import Item, Outlet, Story, StoryEntry
from aggregator.readstate import set_flags
from api.greader.auth import Reader
from api.greader.ids import READ, READING_LIST, long_id
from tests import test_greader
from tests.processes import wait_until
from tests.test_api import T0
from tests.test_greader import API, World, contents, ids_of, post_form, told, unread_counts

world = test_greader.world
"""The fixture of ``tests.test_greader``: 320 English stories, keys alice (en) and bruno (pt-PT)."""


def stamps(engine: sa.Engine, story_ids: list[int]) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(col(StoryEntry.story_id), col(StoryEntry.stamp)).where(
                col(StoryEntry.locale) == "en", col(StoryEntry.story_id).in_(story_ids)
            )
        )
        return {sid: stamp for sid, stamp in rows}


def listening(world: World) -> None:
    """Wait until the app can tell whether what it keeps is current (on PostgreSQL its listener
    connects in the background on first use; nothing is kept until then)."""
    service = world.client.app.state.greader  # type: ignore[attr-defined]
    wait_until(lambda: service.synced() is not None, "the app to follow the database's changes", 20, 0.01)


def reader(world: World, name: str) -> Reader:
    found = world.client.app.state.greader.tokens.login(name, world.keys[name][0])  # type: ignore[attr-defined]
    assert found is not None
    return found


def test_kept_items_follow_repolls_and_editors(world: World) -> None:
    listening(world)
    h = world.login("alice")
    batch = sorted(world.english)[:150]
    first = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, h, batch)}
    again = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, h, batch)}
    assert again == first  # answered from the kept items
    before = stamps(world.engine, batch)
    assert len(before) == len(batch) and all(before.values())

    # A re-poll changes the English member of one story: its entry is rewritten (new stamp).
    polled = batch[7]
    with told(world), Session(world.engine) as s:
        item = s.scalars(sa.select(Item).where(col(Item.story_id) == polled, col(Item.locale) == "en")).one()
        item.title = "Re-polled title"
        item.summary_html = "<p>A corrected summary</p>"
        s.add(item)
        s.flush()
        refresh_story_entries(s, [polled])
        s.commit()
    after = stamps(world.engine, batch)
    assert after[polled] != before[polled]
    assert {k: v for k, v in after.items() if k != polled} == {k: v for k, v in before.items() if k != polled}
    now = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, h, batch)}
    assert now[polled]["title"] == "Re-polled title"
    assert "A corrected summary" in now[polled]["summary"]["content"]
    assert {k: v for k, v in now.items() if k != polled} == {k: v for k, v in first.items() if k != polled}

    # An editor's title for another story.
    edited = batch[20]
    with told(world), Session(world.engine) as s:
        set_title(s, CLI, edited, "en", "An editor's title")
        s.commit()
    now = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, h, batch)}
    assert now[edited]["title"] == "An editor's title"

    # An editor's disclaimer for one outlet's policy: every item of that outlet closes with it.
    with told(world), Session(world.engine) as s:
        policy = s.scalars(sa.select(col(Outlet.disclaimer_policy)).where(col(Outlet.id) == "coindesk")).one()
        publish(s, CLI, policy, "en", "Fresh words from the editors.")
        s.commit()
    now_items = contents(world, h, batch)
    marked = [x for x in now_items if "Fresh words from the editors." in x["summary"]["content"]]
    assert marked and all(x["origin"]["title"] for x in marked)
    assert len(marked) < len(now_items)  # the other policies keep their own texts


def test_kept_ids_and_counts_follow_the_keys_own_marks_only(world: World) -> None:
    listening(world)
    alice, bruno = world.login("alice"), world.login("bruno")
    service = world.client.app.state.greader  # type: ignore[attr-defined]
    who = reader(world, "alice")
    unread = ids_of(world, alice, s=READING_LIST, xt=READ)
    assert sorted(unread) == sorted(world.english)
    counts = service.unread_body(who)
    assert service.unread_body(who) is counts  # kept

    # Another key's marks leave alice's kept answers alone.
    bruno_ids = ids_of(world, bruno, s=READING_LIST)
    r = post_form(world.client, f"{API}/edit-tag", [("i", long_id(bruno_ids[0])), ("a", READ)], bruno)
    assert r.content == b"OK"
    assert service.unread_body(who) is counts

    # Alice's own mark (another device): the next answers change.
    r = post_form(world.client, f"{API}/edit-tag", [("i", long_id(unread[0])), ("a", READ)], alice)
    assert r.content == b"OK"
    assert unread_counts(world, alice)[READING_LIST][0] == len(world.english) - 1
    assert ids_of(world, alice, s=READING_LIST, xt=READ) == unread[1:]

    # A mark written by another process straight into the database is seen as well.
    with told(world), world.engine.begin() as conn:
        set_flags(conn, who.key_id, unread[1:3], read=True)
    assert ids_of(world, alice, s=READING_LIST, xt=READ) == unread[3:]
    assert unread_counts(world, alice)[READING_LIST][0] == len(world.english) - 3
    world.client.post(f"{API}/mark-all-as-read", data={"s": READING_LIST, "T": "x"}, headers=alice)
    assert ids_of(world, alice, s=READING_LIST, xt=READ) == []
    assert unread_counts(world, alice)[READING_LIST][0] == 0


def test_kept_ids_and_counts_follow_new_stories(world: World) -> None:
    """A story stored after an answer was kept is in the next one (the change of its locale)."""
    listening(world)
    h = world.login("alice")
    before = ids_of(world, h, s=READING_LIST)
    count = unread_counts(world, h)[READING_LIST][0]
    with told(world), Session(world.engine) as s:
        source_id = s.scalars(sa.select(col(Item.source_id)).where(col(Item.locale) == "en")).first()
        story = Story(first_published_at=T0, updated_at=T0)
        s.add(story)
        s.flush()
        assert story.id is not None and source_id is not None
        added = story.id
        item = Item(
            source_id=source_id,
            story_id=added,
            identity=f"{added}-new",
            link=f"https://coindesk.example/en/news/{added}",
            title="A story stored later",
            summary_html="<p>New</p>",
            published_at=T0,
            locale="en",
            tickers=[],
            content_hash=f"new{added}",
        )
        s.add(item)
        s.flush()
        story.canonical_item_id = item.id
        refresh_story_entries(s, [added])
        s.commit()
    after = ids_of(world, h, s=READING_LIST)
    assert sorted(after) == sorted([*before, added])
    assert unread_counts(world, h)[READING_LIST][0] == count + 1


def test_a_kept_contents_answer_follows_changes_in_its_batch_and_the_keys_marks(world: World) -> None:
    alice, bruno = world.login("alice"), world.login("bruno")
    service = world.client.app.state.greader  # type: ignore[attr-defined]
    who = reader(world, "alice")
    batch = sorted(world.english)[40:190]
    listening(world)
    first = service.items_contents(who, batch, "http://testserver")
    kept = service.items_contents(who, batch, "http://testserver")
    assert kept.body == first.body
    assert service.items_contents(who, batch, "http://testserver") is kept  # the whole answer, kept

    # Another key's mark keeps it; alice's own mark changes the item's categories.
    bruno_ids = ids_of(world, bruno, s=READING_LIST)
    post_form(world.client, f"{API}/edit-tag", [("i", long_id(bruno_ids[0])), ("a", READ)], bruno)
    assert service.items_contents(who, batch, "http://testserver") is kept
    with told(world):  # its NOTIFY follows: an answer kept before it arrives is dropped then
        r = post_form(world.client, f"{API}/edit-tag", [("i", long_id(batch[3])), ("a", READ)], alice)
    assert r.content == b"OK"
    marked = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, alice, batch)}
    assert READ in marked[batch[3]]["categories"]
    assert all(READ not in x["categories"] for sid, x in marked.items() if sid != batch[3])

    # A story outside the batch's published-at range changes: the answer stays kept.
    kept = service.items_contents(who, batch, "http://testserver")
    assert service.items_contents(who, batch, "http://testserver") is kept
    outside = max(world.english)
    with told(world), Session(world.engine) as s:
        item = s.scalars(sa.select(Item).where(col(Item.story_id) == outside, col(Item.locale) == "en")).one()
        item.title = "Far away"
        s.add(item)
        s.flush()
        refresh_story_entries(s, [outside])
        s.commit()
    assert service.items_contents(who, batch, "http://testserver") is kept
    # One inside it changes: the next answer shows it.
    inside = batch[77]
    with told(world), Session(world.engine) as s:
        item = s.scalars(sa.select(Item).where(col(Item.story_id) == inside, col(Item.locale) == "en")).one()
        item.title = "Changed inside the batch"
        s.add(item)
        s.flush()
        refresh_story_entries(s, [inside])
        s.commit()
    now = {int(x["id"].rsplit("/", 1)[1], 16): x for x in contents(world, alice, batch)}
    assert now[inside]["title"] == "Changed inside the batch"


def test_a_revoked_key_is_refused_on_the_next_request(world: World) -> None:
    """Checked tokens are kept, so no request reads the key; revoking it (an editor's action) drops
    them: through this process's admin API at once, from another process once it is told."""
    with Session(world.engine) as s:
        admin = create_key(s, CLI, "admin", "root")[1]
        s.commit()
    alice, bruno = world.login("alice"), world.login("bruno")
    listening(world)
    for headers in (alice, bruno):
        assert world.client.get(f"{API}/unread-count", headers=headers).status_code == 200
        assert world.client.get(f"{API}/unread-count", headers=headers).status_code == 200  # kept
    r = world.client.delete(
        f"/v1/admin/keys/{reader(world, 'alice').key_id}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert r.status_code == 200, r.text
    for path in ("/unread-count", "/user-info", f"/stream/items/ids?s={READING_LIST}"):
        r = world.client.get(API + path, headers=alice)
        assert r.status_code == 401 and r.headers["Google-Bad-Token"] == "true", path
    assert world.client.get(f"{API}/unread-count", headers=bruno).status_code == 200

    bruno_id = reader(world, "bruno").key_id
    with told(world), Session(world.engine) as s:  # another process: the CLI
        revoke_key(s, CLI, bruno_id)
        s.commit()
    for path in ("/unread-count", "/user-info", f"/stream/items/ids?s={READING_LIST}"):
        r = world.client.get(API + path, headers=bruno)
        assert r.status_code == 401 and r.headers["Google-Bad-Token"] == "true", path

"""Decide stage: plain NormalizedEntry / StoredItem data, no database."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.decide import Decision, StoredItem, decide, entry_identity
from aggregator.normalize import NormalizedEntry

WHEN = datetime(2026, 3, 5, 9, 30, tzinfo=UTC)


def entry(
    guid: str | None = "g-1",
    link: str | None = "https://news.example/a/1",
    title: str = "Title",
    content_hash: str = "h1",
    published_at: datetime = WHEN,
) -> NormalizedEntry:
    return NormalizedEntry(
        guid=guid,
        link=link,
        title=title,
        summary_html="",
        content_html="",
        summary_text="",
        text=title,
        published_at=published_at,
        image=None,
        author=None,
        language="en",
        tickers=(),
        links={"alternates": [], "source": None, "original": None, "outbound": []},
        content_hash=content_hash,
    )


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def stored(
    e: NormalizedEntry, item_id: int = 1, content_hash: str | None = None, tombstone: bool = False
) -> dict[str, StoredItem]:
    identity = entry_identity(e)
    return {identity: StoredItem(item_id, identity, content_hash or e.content_hash, tombstone)}


def test_identity_prefers_guid_then_link_then_title_and_day() -> None:
    assert entry_identity(entry()) == sha("guid:g-1")
    assert entry_identity(entry(guid=None)) == sha("link:https://news.example/a/1")
    assert entry_identity(entry(guid=None, link=None)) == sha("title:Title|2026-03-05")
    # same day, other time: same identity; other day: another
    later = entry(guid=None, link=None, published_at=WHEN + timedelta(hours=10))
    assert entry_identity(later) == entry_identity(entry(guid=None, link=None))
    next_day = entry(guid=None, link=None, published_at=WHEN + timedelta(days=1))
    assert entry_identity(next_day) != entry_identity(entry(guid=None, link=None))
    # a guid survives edits of link and title
    assert entry_identity(entry(link="https://news.example/moved", title="Edited")) == entry_identity(entry())


def test_new_entry_is_inserted() -> None:
    (decision,) = decide([entry()], {})
    assert decision == Decision("insert", entry_identity(entry()), entry(), None, "new")


def test_unchanged_entry_is_ignored() -> None:
    e = entry()
    (decision,) = decide([e], stored(e, item_id=7))
    assert (decision.action, decision.item_id, decision.reason) == ("ignore", 7, "unchanged")


def test_changed_entry_updates_the_same_item() -> None:
    e = entry(content_hash="new")
    (decision,) = decide([e], stored(e, item_id=7, content_hash="old"))
    assert (decision.action, decision.item_id, decision.entry) == ("update", 7, e)


def test_tombstone_is_ignored_even_when_changed() -> None:
    e = entry(content_hash="new")
    (decision,) = decide([e], stored(e, item_id=3, content_hash="old", tombstone=True))
    assert (decision.action, decision.item_id, decision.reason) == ("ignore", 3, "tombstone")


def test_only_the_first_of_duplicate_identities_is_acted_on() -> None:
    first = entry(title="First copy", content_hash="a")
    second = entry(title="Second copy", content_hash="b", link="https://news.example/a/1-edited")
    other = entry(guid="g-2", content_hash="c")
    decisions = decide([first, second, other], {})
    assert [(d.action, d.reason, d.entry.title) for d in decisions] == [
        ("insert", "new", "First copy"),
        ("ignore", "duplicate in feed", "Second copy"),
        ("insert", "new", "Title"),
    ]


def test_duplicate_of_a_stored_item_does_not_update_it_twice() -> None:
    first = entry(content_hash="changed")
    second = replace(first, content_hash="changed again")
    decisions = decide([first, second], stored(first, item_id=9, content_hash="old"))
    assert [(d.action, d.item_id) for d in decisions] == [("update", 9), ("ignore", 9)]


def test_decisions_follow_feed_order_one_per_entry() -> None:
    entries = [entry(guid=f"g-{i}") for i in range(5)]
    decisions = decide(entries, {})
    assert [d.entry for d in decisions] == entries


# --- properties -----------------------------------------------------------------------------

guids = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))
links = st.one_of(st.none(), st.sampled_from(["https://x.example/1", "https://x.example/2"]))
entries_strategy = st.lists(
    st.builds(
        entry,
        guid=guids,
        link=links,
        title=st.sampled_from(["T1", "T2"]),
        content_hash=st.sampled_from(["h1", "h2", "h3"]),
        published_at=st.sampled_from([WHEN, WHEN + timedelta(days=1)]),
    ),
    max_size=12,
)


@st.composite
def stored_strategy(draw: st.DrawFn, feed: list[NormalizedEntry]) -> dict[str, StoredItem]:
    result: dict[str, StoredItem] = {}
    for index, e in enumerate(feed):
        if draw(st.booleans()):
            identity = entry_identity(e)
            result[identity] = StoredItem(
                index + 1, identity, draw(st.sampled_from(["h1", "h2", "h3"])), draw(st.booleans())
            )
    return result


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decide_properties(data: st.DataObject) -> None:
    feed = data.draw(entries_strategy)
    store = data.draw(stored_strategy(feed))
    decisions = decide(feed, store)

    assert len(decisions) == len(feed)
    inserted = [d.identity for d in decisions if d.action == "insert"]
    assert len(inserted) == len(set(inserted)), "an identity was inserted twice"
    assert not set(inserted) & set(store), "a stored identity was inserted again"
    acted = [d.identity for d in decisions if d.action != "ignore"]
    assert len(acted) == len(set(acted)), "an identity was acted on twice"
    for decision in decisions:
        item = store.get(decision.identity)
        if item is not None and item.tombstone:
            assert decision.action == "ignore", "a tombstone came back"
        if decision.action == "update":
            assert item is not None and decision.item_id == item.id
            assert item.content_hash != decision.entry.content_hash


@settings(max_examples=100, deadline=None)
@given(entries_strategy)
def test_applying_decisions_then_deciding_again_changes_nothing(feed: list[NormalizedEntry]) -> None:
    """After storing what decide said, the same feed is all "ignore": polling is idempotent."""
    store: dict[str, StoredItem] = {}
    for number, decision in enumerate(decide(feed, store), start=1):
        if decision.action == "insert":
            store[decision.identity] = StoredItem(
                number, decision.identity, decision.entry.content_hash, False
            )
    assert all(d.action == "ignore" for d in decide(feed, store))

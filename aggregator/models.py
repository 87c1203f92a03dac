"""Tables (SQLModel; ``source``, ``item`` and ``feedchange`` map the Core columns of
``aggregator.tables``). Every datetime is UTC-aware in Python and stored as UTC.

Tables come from Alembic migrations (``migrations/``), never from ``create_all`` outside tests.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from aggregator import tables
from aggregator.tables import UTCDateTime as UTCDateTime  # defined with the Core tables
from aggregator.tables import utcnow as utcnow


def _ts(nullable: bool = False, index: bool = False, **kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, nullable=nullable, index=index, **kw)


class Outlet(SQLModel, table=True):
    """A publisher (BlockTempo, Gate news …); its sources are its feeds per locale."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    homepage: str | None = Field(default=None, max_length=500)
    disclaimer_policy: str = Field(default="third-party", max_length=32)
    """``none`` | ``third-party`` | ``sponsored``: which disclaimer text family applies."""


_SOURCE = tables.columns("source")


class Source(SQLModel, table=True):
    """One feed URL of one outlet in one locale, with its polling state (columns:
    ``aggregator.tables``, shared with the poll round's Core statements)."""

    id: int | None = Field(default=None, sa_column=_SOURCE["id"])
    url: str = Field(sa_column=_SOURCE["url"])
    outlet_id: str = Field(sa_column=_SOURCE["outlet_id"])
    locale: str = Field(sa_column=_SOURCE["locale"])
    title: str | None = Field(default=None, sa_column=_SOURCE["title"])
    enabled: bool = Field(default=True, sa_column=_SOURCE["enabled"])
    etag: str | None = Field(default=None, sa_column=_SOURCE["etag"])
    last_modified: str | None = Field(default=None, sa_column=_SOURCE["last_modified"])
    next_check_at: datetime = Field(default_factory=utcnow, sa_column=_SOURCE["next_check_at"])
    interval_s: int = Field(default=900, sa_column=_SOURCE["interval_s"])
    error_count: int = Field(default=0, sa_column=_SOURCE["error_count"])
    last_error: str | None = Field(default=None, sa_column=_SOURCE["last_error"])
    last_bozo: str | None = Field(default=None, sa_column=_SOURCE["last_bozo"])
    last_checked_at: datetime | None = Field(default=None, sa_column=_SOURCE["last_checked_at"])
    last_status: int | None = Field(default=None, sa_column=_SOURCE["last_status"])
    skipped_entries: int = Field(default=0, sa_column=_SOURCE["skipped_entries"])
    """Malformed entries of this feed skipped so far (the feed's other entries were kept)."""
    lease_owner: str | None = Field(default=None, sa_column=_SOURCE["lease_owner"])
    lease_until: datetime | None = Field(default=None, sa_column=_SOURCE["lease_until"])
    created_at: datetime = Field(default_factory=utcnow, sa_column=_SOURCE["created_at"])


class Story(SQLModel, table=True):
    """One article and all its versions; ``canonical_item_id`` is the original."""

    __table_args__ = (sa.Index("ix_story_feed_order", "first_published_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    canonical_item_id: int | None = Field(default=None, index=True)
    first_published_at: datetime = _ts(index=True, default_factory=utcnow)
    updated_at: datetime = _ts(index=True, default_factory=utcnow)
    hidden: bool = False
    pinned: bool = False
    pinned_until: datetime | None = _ts(nullable=True, default=None)
    """An editor's pin holds until then (None: until unpinned)."""
    pinned_locale: str | None = Field(default=None, max_length=8)
    """The locale whose feed the pin tops (None: every locale)."""
    titles: dict[str, str] | None = Field(default_factory=dict, sa_type=sa.JSON, nullable=True)
    """Editors' titles per served locale, used instead of the member's own title."""
    stored_at: datetime | None = _ts(nullable=True, default_factory=utcnow)
    """When babelwire stored the story (the Google Reader API's ``ot``/``nt`` filter on it); None
    on rows written without it (bulk loads): read as ``first_published_at``."""


_ITEM = tables.columns("item")


class Item(SQLModel, table=True):
    """One entry read from one source, normalized; belongs to exactly one story (columns:
    ``aggregator.tables``, shared with the poll round's Core statements)."""

    __table_args__ = tables.constraints("item")

    id: int | None = Field(default=None, sa_column=_ITEM["id"])
    source_id: int = Field(sa_column=_ITEM["source_id"])
    story_id: int | None = Field(default=None, sa_column=_ITEM["story_id"])
    identity: str = Field(sa_column=_ITEM["identity"])
    """sha256 of the entry identity: guid → link → title+date (see ``decide``)."""
    guid: str | None = Field(default=None, sa_column=_ITEM["guid"])
    link: str | None = Field(default=None, sa_column=_ITEM["link"])
    """Canonical link: absolute, tracking parameters removed."""
    title: str = Field(default="", sa_column=_ITEM["title"])
    summary_html: str = Field(default="", sa_column=_ITEM["summary_html"])
    content_html: str = Field(default="", sa_column=_ITEM["content_html"])
    summary_text: str = Field(default="", sa_column=_ITEM["summary_text"])
    """Plain text of ``summary_html`` on one line, worked out once at ingest."""
    text: str = Field(default="", sa_column=_ITEM["text"])
    """Plain text (title + body) for dedupe."""
    published_at: datetime = Field(sa_column=_ITEM["published_at"])
    fetched_at: datetime = Field(default_factory=utcnow, sa_column=_ITEM["fetched_at"])
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ITEM["updated_at"])
    image: str | None = Field(default=None, sa_column=_ITEM["image"])
    author: str | None = Field(default=None, sa_column=_ITEM["author"])
    locale: str = Field(sa_column=_ITEM["locale"])
    """The source's declared locale."""
    language: str | None = Field(default=None, sa_column=_ITEM["language"])
    """Language detected offline from the text (a locale code), when it could be."""
    tickers: list[str] = Field(default_factory=list, sa_column=_ITEM["tickers"])
    links: dict[str, Any] = Field(default_factory=dict, sa_column=_ITEM["links"])
    """Declared identity links: {"alternates": [{"href", "hreflang"}], "source": url,
    "original": url (attribution link), "outbound": [urls in the body]}."""
    content_hash: str = Field(sa_column=_ITEM["content_hash"])
    tombstone: bool = Field(default=False, sa_column=_ITEM["tombstone"])
    dedupe_features: bytes | None = Field(default=None, sa_column=_ITEM["dedupe_features"])
    """Dedupe's extracted features of this item (``aggregator.dedupe.codec``), so a run does not
    re-extract the whole time window; internal, never part of the API."""
    dedupe_key: str | None = Field(default=None, sa_column=_ITEM["dedupe_key"])
    """What ``dedupe_features`` were extracted from (item fields, lexicon, extractor version):
    the cache is used only while this still matches."""


class MergeDecision(SQLModel, table=True):
    """Why an item sits in its story: the signals, score and threshold of the decision."""

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id", index=True, unique=True)
    story_id: int = Field(foreign_key="story.id", index=True)
    matched_item_id: int | None = None
    kind: str = Field(default="new", max_length=16)
    """``new`` (founded a story) | ``merge`` (joined one) | ``editor`` (override)."""
    score: float = 0.0
    threshold: float = 0.0
    signals: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    decided_at: datetime = _ts(default_factory=utcnow)


class RelatedStory(SQLModel, table=True):
    """Two stories of the same event, written independently: linked, never merged."""

    __table_args__ = (sa.UniqueConstraint("story_id", "related_id", name="uq_related_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    story_id: int = Field(foreign_key="story.id", index=True)
    related_id: int = Field(foreign_key="story.id", index=True)
    score: float = 0.0
    signals: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class EditorialOverride(SQLModel, table=True):
    """An editor's merge/split, keyed by item links so it survives re-runs of dedupe."""

    id: int | None = Field(default=None, primary_key=True)
    action: str = Field(max_length=16)
    """Membership — ``split``: ``item_link`` must stand alone; ``merge``: ``item_link`` joins
    ``other_link``'s story. Story attributes, on the story holding ``item_link`` — ``original``:
    that item is the original; ``hide``/``unhide``; ``pin`` (``payload`` {"until", "locale"}) /
    ``unpin``; ``title`` (``payload`` {"locale", "title"}; an empty title drops the edit)."""
    item_link: str = Field(max_length=2000)
    other_link: str | None = Field(default=None, max_length=2000)
    payload: dict[str, Any] | None = Field(default_factory=dict, sa_type=sa.JSON, nullable=True)
    actor: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(default_factory=utcnow)


class Disclaimer(SQLModel, table=True):
    """A versioned per-locale text; the newest version of a (policy, locale) pair is in force."""

    __table_args__ = (sa.UniqueConstraint("policy", "locale", "version", name="uq_disclaimer_version"),)

    id: int | None = Field(default=None, primary_key=True)
    policy: str = Field(max_length=32, index=True)
    locale: str = Field(max_length=8)
    version: int = 1
    text: str = Field(sa_type=sa.Text)
    created_at: datetime = _ts(default_factory=utcnow)


_FEEDCHANGE = tables.columns("feedchange")


class FeedChange(SQLModel, table=True):
    """Append-only log of story changes, for ``/v1/feed/changes`` delta sync (columns:
    ``aggregator.tables``)."""

    id: int | None = Field(default=None, sa_column=_FEEDCHANGE["id"])
    story_id: int = Field(sa_column=_FEEDCHANGE["story_id"])
    change: str = Field(sa_column=_FEEDCHANGE["change"])
    """``upsert`` | ``removed``."""
    at: datetime = Field(default_factory=utcnow, sa_column=_FEEDCHANGE["at"])


class ApiKey(SQLModel, table=True):
    """An API key of the admin API and dashboard; only the sha256 of the key is stored."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)
    """``reader`` | ``editor`` | ``admin``."""
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    """The key's first characters, to tell keys apart in lists."""
    created_at: datetime = _ts(default_factory=utcnow)
    revoked_at: datetime | None = _ts(nullable=True, default=None)
    locale: str = Field(default="en", max_length=8, sa_column_kwargs={"server_default": "en"})
    """The reader's locale: what the Google Reader API (``/greader``) serves this key."""


class AuditLog(SQLModel, table=True):
    """One admin action: who (key name), what, on what, when, and the state before and after."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True, default_factory=utcnow)
    actor: str = Field(max_length=100)
    key_id: int | None = None
    action: str = Field(max_length=64, index=True)
    target: str = Field(default="", max_length=2000)
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class ReviewVerdict(SQLModel, table=True):
    """An editor's verdict on a dedupe decision of the review queue (keyed by item link)."""

    id: int | None = Field(default=None, primary_key=True)
    item_link: str = Field(max_length=2000, index=True)
    verdict: str = Field(max_length=16)
    """``confirm`` (the machine was right) | ``correct`` (an override fixed it)."""
    decision_kind: str = Field(max_length=16)
    story_id: int | None = None
    actor: str = Field(max_length=100)
    at: datetime = _ts(default_factory=utcnow)


class AppState(SQLModel, table=True):
    """Values every process shares (the generated cursor secret, the fallback table the feed entries
    were written with): kept in the database, so replicas and restarts agree."""

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_type=sa.Text)


def entry_stamp() -> int:
    """A new ``storyentry.stamp``: random, never 0 (the stamp of entries older than the column)."""
    return secrets.randbits(62) + 1


class StoryEntry(SQLModel, table=True):
    """What one locale's feed shows for one story, written ahead of reads (``aggregator.entries``).

    ``body`` is the entry's JSON object without its closing brace and its disclaimer, which the API
    adds for the reader's locale. ``reach``: 0 the story has a version in the locale's chain (the
    default feed), 1 it is served in its original's locale (``untranslated=include``), 2 only when
    asked for by id (every member is in a locale the reader is never served)."""

    __table_args__ = (
        sa.Index("ix_storyentry_page", "locale", "reach", "published_at", "story_id"),
        sa.Index("ix_storyentry_all", "locale", "published_at", "story_id"),
        sa.Index("ix_storyentry_pinned", "locale", "pinned_until"),
        sa.Index("ix_storyentry_outlet", "locale", "outlet_id", "reach", "published_at", "story_id"),
        sa.Index("ix_storyentry_stamp", "locale", "story_id", "stamp", "policy", "outlet_id"),
    )

    locale: str = Field(primary_key=True, max_length=8)
    story_id: int = Field(primary_key=True)
    published_at: datetime = _ts()
    reach: int = 0
    policy: str = Field(max_length=32)
    """The served member's outlet disclaimer policy."""
    body: str = Field(sa_type=sa.Text)
    pinned_until: datetime | None = _ts(nullable=True, default=None)
    """An editor's pin of the story on top of this locale's first page holds until then
    (``aggregator.entries.PIN_FOREVER``: until unpinned); None: not pinned here."""
    outlet_id: str | None = Field(default=None, max_length=64)
    """The served member's outlet: the Google Reader API's feed (``feed/<n>``) listing the entry."""
    stamp: int = Field(
        default_factory=entry_stamp, sa_type=sa.BigInteger, sa_column_kwargs={"server_default": "0"}
    )
    """A random number every write of the entry draws anew (:func:`entry_stamp`, the column's
    default on every insert; entries are only ever rewritten by delete + insert): readers that keep
    something derived from an entry check it against the stamp, never the body (``api.greader``).
    0: written before the stamp existed."""


class StoryTicker(SQLModel, table=True):
    """A ticker a visible story mentions (any live member), for the feed's ``tickers=`` filter."""

    __table_args__ = (sa.Index("ix_storyticker_page", "ticker", "published_at", "story_id"),)

    story_id: int = Field(primary_key=True)
    ticker: str = Field(primary_key=True, max_length=16)
    published_at: datetime = _ts()


class StoryOutlet(SQLModel, table=True):
    """An outlet with a live member in a visible story, for the feed's ``outlet=`` filter."""

    __table_args__ = (sa.Index("ix_storyoutlet_page", "outlet_id", "published_at", "story_id"),)

    story_id: int = Field(primary_key=True)
    outlet_id: str = Field(primary_key=True, max_length=64)
    published_at: datetime = _ts()


class GreaderFeed(SQLModel, table=True):
    """The number of an outlet in the Google Reader API (``feed/<id>``): small, given on first
    listing, never changed."""

    id: int | None = Field(default=None, primary_key=True)
    outlet_id: str = Field(foreign_key="outlet.id", unique=True, max_length=64)


class GreaderState(SQLModel, table=True):
    """One API key's read and starred flags on one story (Google Reader API); no row: unread, not
    starred."""

    key_id: int = Field(foreign_key="apikey.id", primary_key=True)
    story_id: int = Field(primary_key=True)
    read: bool = False
    starred: bool = False
    updated_at: datetime = _ts(default_factory=utcnow)


class PageChange(SQLModel, table=True):
    """What a committed write of entries changed, for the API processes' kept pages (SQLite; on
    PostgreSQL the same travels as a ``NOTIFY`` payload): pages of ``locale`` (None: every locale)
    whose published-at range meets [``lo``, ``hi``] (None: unbounded) are stale. ``seq`` grows by one
    per committed row (AUTOINCREMENT, never reused); the writers keep the newest few thousand
    (``aggregator.entries.touch_pages``)."""

    __table_args__ = {"sqlite_autoincrement": True}

    seq: int | None = Field(default=None, primary_key=True)
    locale: str | None = Field(default=None, max_length=16)
    """A feed key: the locale, or ``<locale>~u`` for entries only ``untranslated=include`` lists."""
    lo: datetime | None = _ts(nullable=True, default=None)
    hi: datetime | None = _ts(nullable=True, default=None)

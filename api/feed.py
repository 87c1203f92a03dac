"""Reading stories for the API: the keyset feed page, one story, and delta-sync changes.

What each locale's feed shows for a story is written ahead of reads by the writers
(``aggregator.entries``): a page is **one statement, one round trip** (``api.feed_statements``,
run by ``api.dbapi``) — an index range scan of ready entry fragments plus the disclaimers — and this
module only joins the fragments, adding to each the disclaimer for the *reader's* locale:

* the disclaimer is the newest editors' text for (the served outlet's policy, the requested
  locale), else the bundled one; only when neither exists, the next locale of the reader's chain
  (``core.fallbacks.reader_locales``: the locale, its fallback steps, then ``en``);
* by default a locale's feed holds only stories with a version in its chain (the locale, its
  fallbacks, converted zh); ``untranslated=True`` adds the others, served in their original's
  locale and marked ``untranslated``.

On PostgreSQL reads run in autocommit (no BEGIN/ROLLBACK round trips); one statement sees one
snapshot, so a page's entries and disclaimers agree with each other.

Built pages are kept (``api.caching.PageCache``) with their locale and the published-at range
they depend on, until a committed change of entries meets that range (every writer of entries
says which locales and times it changed; every editor's action, everything:
``aggregator.entries.touch_pages``) or a pin of their locale ends. On SQLite a request first reads
the changes committed since the last it saw — a primary-key range scan on a connection of its
own, empty when nothing changed — and drops the pages they meet, so a page is never older than
the committed entries. On PostgreSQL the writer's transaction sends ``NOTIFY`` with the changes
(delivered at commit) to one listening connection per process (``api.dbapi.PostgresListener``):
a kept page is answered until the notification arrives, and nothing kept is answered while that
connection is down (every page is dropped when it reconnects). What is derived from a page (its
encoded body, ETags, gzip bytes, a re-export's document) is kept with it (:meth:`FeedRows.derived`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pydantic_core
import sqlalchemy as sa

from aggregator.entries import (
    BY_ID_ONLY,
    IN_CHAIN,
    PAGES_CHANNEL,
    PINNED,
    UNPINNED,
    UNTRANSLATED,
    feed_key,
    iso_utc,
    parse_page_changes,
)
from api.caching import EVERYTHING, PageCache, Span, span
from api.cursor import FeedPosition, TokenSigner
from api.dbapi import PostgresListener, SqliteVersion, compiled_for
from api.errors import Problem
from api.feed_statements import (
    DISCLAIMER_ROW,
    ENTRY,
    ENTRY_ROW,
    FEEDCHANGE,
    MAX_PINNED,
    MEMBER_ROW,
    OUTLET_ROW,
    PIN_END_ROW,
    PINNED_ROW,
    disclaimer_statement,
    feed_statement,
    page_changes_statement,
    story_statement,
)
from core.fallbacks import FALLBACKS, Chain, member_locale, reader_locales
from core.locales import LOCALES

CHANGES_PER_PAGE = 1000
SEED_VERSION = "seed-1"
PAGE_CACHE_ENTRIES = 1024
"""Built pages kept per process (a page, its gzip bytes and a re-export: ~40 KB)."""
D = TypeVar("D")

Json = dict[str, Any]
"""A response body (or part of one) as plain JSON-able values, in the shape ``api.schemas`` documents."""


@dataclass(frozen=True)
class FeedQuery:
    """A validated feed request."""

    locale: str
    after: FeedPosition | None
    limit: int
    tickers: tuple[str, ...] = ()
    outlet: str | None = None
    untranslated: bool = False
    """Also the stories without a version in the reader's chain (served in their original's locale)."""


@dataclass(frozen=True, slots=True)
class PageEntry:
    """One entry of a page: its story, times (naive UTC, as read) and its JSON object, disclaimer
    included."""

    story_id: int
    published_at: datetime
    updated_at: datetime
    """The story's last change (a member or link added): the re-exports' ``updated``."""
    json: bytes


class FeedRows:
    """One feed page as read from the entries, pinned ones first; what is derived from it is kept
    with it (:meth:`derived`), so a kept page is not encoded again."""

    __slots__ = ("_derived", "_lock", "entries", "locale", "next_cursor")

    def __init__(self, locale: str, entries: tuple[PageEntry, ...], next_cursor: str | None) -> None:
        self.locale = locale
        self.entries = entries
        self.next_cursor = next_cursor
        self._derived: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def derived(self, key: Hashable, make: Callable[[], D]) -> D:
        """``make()`` once per page and ``key`` (a pure function of the page and the key)."""
        try:
            return self._derived[key]
        except KeyError:
            pass
        value = make()
        with self._lock:
            return self._derived.setdefault(key, value)

    def body(self) -> bytes:
        """The ``FeedPage`` body."""
        return b"".join(
            (
                b'{"items":[',
                b",".join(e.json for e in self.entries),
                b'],"next_cursor":',
                pydantic_core.to_json(self.next_cursor),
                b',"locale_requested":',
                pydantic_core.to_json(self.locale),
                b"}",
            )
        )


class FeedReader:
    """Builds the API's response bodies from the precomputed entries; one per app, thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        signer: TokenSigner,
        *,
        fallbacks: Mapping[str, Chain] = FALLBACKS,
        seed_disclaimers: Mapping[tuple[str, str], str] | None = None,
        page_cache_entries: int = PAGE_CACHE_ENTRIES,
    ) -> None:
        """``page_cache_entries``: built pages kept (0: none, every page is read)."""
        self.engine = (
            engine
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.signer = signer
        self.fallbacks = fallbacks
        self.seed_disclaimers = dict(seed_disclaimers or {})
        self._reader_locales = {loc: reader_locales(loc, fallbacks) for loc in LOCALES}
        self.pages: PageCache[FeedRows] = PageCache(page_cache_entries)
        self._listener = (
            PostgresListener(engine, PAGES_CHANNEL, on_notify=self._notified)
            if engine.dialect.name == "postgresql"
            else None
        )
        shared = engine.url.database not in (None, "", ":memory:")  # a memory database has one connection
        self._changes = (
            SqliteVersion(engine, page_changes_statement()) if self._listener is None and shared else None
        )
        self._seen: int | None = None
        """The last ``pagechange.seq`` applied (SQLite); None before the first read."""
        self._sync_lock = threading.Lock()
        sa.event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def _notified(self, payload: str | None) -> None:
        """A PostgreSQL notification's changes (None: any may have been missed) applied to the pages."""
        if payload is None:
            self.pages.apply([EVERYTHING])
        else:
            self.pages.apply(span(*change) for change in parse_page_changes(payload))

    def sync_pages(self) -> int | None:
        """Bring the kept pages up to the committed changes (see the module doc) and give the mark a
        page built now is kept under; None when the database cannot say (nothing kept is answered
        or kept then)."""
        if self._listener is not None:
            return None if self._listener.generation() is None else self.pages.mark()
        if self._changes is None:
            return None
        with self._sync_lock:
            rows = self._changes.read({"since": self._seen or 0})
            if rows is None:
                return None
            if rows:
                first = rows[0][0]
                changes: list[Span] = []
                if self._seen is None or first != self._seen + 1:
                    changes.append(EVERYTHING)  # the first read, or changes pruned before they were read
                changes += [span(locale, lo, hi) for _, locale, lo, hi in rows]
                self.pages.apply(changes)
                self._seen = rows[-1][0]
            elif self._seen is None:
                self._seen = 0
            return self.pages.mark()

    def kept_page(self, query: FeedQuery) -> FeedRows | None:
        """The kept page for ``query`` while it is current (no page read)."""
        return None if self.sync_pages() is None else self.pages.get(query)

    def close(self) -> None:
        """Stop the change listener and close the version connection."""
        if self._listener is not None:
            self._listener.stop()
        if self._changes is not None:
            self._changes.close()

    # ---- disclaimers ---------------------------------------------------------------------

    def _disclaimer(
        self, policy: str, locale: str, rows: Mapping[tuple[str, str], tuple[str, str]]
    ) -> Json | None:
        """The reader's text for ``policy``: the newest editors' version for the requested locale,
        else the bundled one; the next locale of the reader's chain only when neither exists."""
        for loc in self._reader_locales.get(locale) or reader_locales(locale, self.fallbacks):
            row = rows.get((policy, loc))
            if row is not None:
                text, version = row
                return {"text": text, "version": version, "locale": loc} if text.strip() else None
            seed = self.seed_disclaimers.get((policy, loc))
            if seed is not None:
                return {"text": seed, "version": SEED_VERSION, "locale": loc} if seed.strip() else None
        return None

    def disclaimer(
        self, policy: str, locale: str, rows: Mapping[tuple[str, str], tuple[str, str]]
    ) -> Json | None:
        """The disclaimer an entry of ``policy`` carries for a reader of ``locale`` (as on a page);
        ``rows`` from :meth:`current_disclaimers`."""
        return self._disclaimer(policy, locale, rows)

    def current_disclaimers(self, conn: sa.Connection) -> dict[tuple[str, str], tuple[str, str]]:
        """(policy, locale) → (text, version) of the editors' newest disclaimers."""
        return {
            (policy, locale): (body or "", str(version))
            for _, _, _, policy, body, locale, version, *_ in compiled_for(
                disclaimer_statement(), conn.dialect
            ).rows(conn, {})
        }

    def _disclaimer_bytes(
        self,
        policy: str,
        locale: str,
        rows: Mapping[tuple[str, str], tuple[str, str]],
        memo: dict[str, bytes],
    ) -> bytes:
        encoded = memo.get(policy)
        if encoded is None:
            encoded = memo[policy] = pydantic_core.to_json(self._disclaimer(policy, locale, rows))
        return encoded

    # ---- endpoints -----------------------------------------------------------------------

    def feed_page_bytes(self, query: FeedQuery) -> bytes | Problem:
        """A ``FeedPage`` body, encoded: the stored fragments joined, each with its disclaimer."""
        page = self.feed_rows(query)
        return page if isinstance(page, Problem) else page.body()

    def feed_rows(self, query: FeedQuery) -> FeedRows | Problem:
        """The page (the kept one while current), before it is joined into a body (the re-exports
        build on it)."""
        mark = self.sync_pages()  # before the page: a change in between keeps it out
        if mark is not None:
            page = self.pages.get(query)
            if page is not None:
                return page
        with self.engine.connect() as conn:
            found = self._read_page(conn, query)
        if not isinstance(found, Problem):
            page, valid_until, page_span = found
            self.pages.put(query, mark, page, valid_until, page_span)
            return page
        return found

    def _read_page(self, conn: sa.Connection, query: FeedQuery) -> tuple[FeedRows, float, Span] | Problem:
        """The page read from the entries, until when it stays right on its own (the next end of a
        pin in its locale, as a POSIX time), and its span: the published-at range a change must
        meet to change it — from the first entry past it (``limit + 1`` are read: that entry decides
        the next cursor; none: unbounded) up to its cursor (a first page: unbounded, and its pinned
        entries' changes name the whole locale)."""
        now = datetime.now(UTC)
        params: dict[str, Any] = {"locale": query.locale, "now": now}
        if query.after is not None:
            params["after_ts"] = query.after.published_at
            params["after_id"] = query.after.story_id
        for i, ticker in enumerate(query.tickers):
            params[f"ticker_{i}"] = ticker
        if query.outlet is not None:
            params["outlet"] = query.outlet
        statement = feed_statement(
            query.after is not None,
            len(query.tickers),
            query.outlet is not None,
            query.untranslated,
            query.limit + 1,
        )
        Found = tuple[datetime, int, str, str, datetime]
        entries: list[Found] = []
        pinned: list[Found] = []
        disclaimers: dict[tuple[str, str], tuple[str, str]] = {}
        outlet_known = False
        valid_until = float("inf")
        for (
            kind,
            story_id,
            published_at,
            policy,
            body,
            locale,
            version,
            *_,
            pin_end,
            updated_at,
        ) in compiled_for(statement, conn.dialect).rows(conn, params):
            if kind == ENTRY_ROW:
                entries.append((published_at, story_id, policy, body, updated_at))
            elif kind == PINNED_ROW:
                pinned.append((published_at, story_id, policy, body.replace(UNPINNED, PINNED, 1), updated_at))
            elif kind == DISCLAIMER_ROW:
                disclaimers[(policy, locale)] = (body or "", str(version))
            elif kind == OUTLET_ROW:
                outlet_known = True
            elif kind == PIN_END_ROW and pin_end is not None:
                valid_until = (pin_end if pin_end.tzinfo else pin_end.replace(tzinfo=UTC)).timestamp()
        if query.outlet is not None and not outlet_known:
            return Problem(400, "unknown_outlet", f"unknown outlet {query.outlet!r}")
        entries.sort(reverse=True)
        pinned.sort(reverse=True)
        more = len(entries) > query.limit
        page = entries[: query.limit]
        memo: dict[str, bytes] = {}
        listed = tuple(
            PageEntry(
                story_id,
                published_at,
                updated_at,
                b"".join(
                    (
                        body.encode(),
                        b',"disclaimer":',
                        self._disclaimer_bytes(policy, query.locale, disclaimers, memo),
                        b"}",
                    )
                ),
            )
            for published_at, story_id, policy, body, updated_at in pinned[:MAX_PINNED] + page
        )
        next_cursor = None
        if more and page:
            published_at, story_id, *_ = page[-1]
            next_cursor = self.signer.feed_cursor(FeedPosition(published_at.replace(tzinfo=UTC), story_id))
        page_span = span(
            feed_key(query.locale, UNTRANSLATED if query.untranslated else IN_CHAIN),
            entries[query.limit][0] if more else None,
            None if query.after is None else query.after.published_at,
        )
        return FeedRows(query.locale, listed, next_cursor), valid_until, page_span

    def feed_page(self, query: FeedQuery) -> Json | Problem:
        """A ``FeedPage`` body as plain values (the JSON route sends :meth:`feed_page_bytes`)."""
        body = self.feed_page_bytes(query)
        return body if isinstance(body, Problem) else json.loads(body)

    def story(self, story_id: int, locale: str) -> Json | None:
        """A ``StoryDetail`` body; None when the story is missing, hidden or has no live member.

        The entry is the one the locale's feed shows (or would, for a story left out of it)."""
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.engine.connect() as conn:
            rows = compiled_for(story_statement(), conn.dialect).rows(
                conn, {"story_id": story_id, "locale": locale}
            )
        entry: Json | None = None
        members: list[tuple[bool, datetime, int, Json]] = []
        disclaimers: dict[tuple[str, str], tuple[str, str]] = {}
        policy = ""
        for (
            kind, _sid, published_at, row_policy, body, row_locale, version, item_id, link, language, outlet_id,
            outlet_name, canonical_item_id, pinned_until, _updated_at,
        ) in rows:  # fmt: skip
            if kind == ENTRY_ROW:
                entry, policy = json.loads(body + "}"), row_policy
                entry["pinned"] = pinned_until is not None and pinned_until > now
            elif kind == DISCLAIMER_ROW:
                disclaimers[(row_policy, row_locale)] = (body or "", str(version))
            elif kind == MEMBER_ROW:
                original = canonical_item_id == item_id
                members.append(
                    (
                        not original,
                        published_at,
                        item_id,
                        {
                            "id": item_id,
                            "locale": member_locale(row_locale, language) if language else row_locale,
                            "url": link,
                            "title": body or "",
                            "outlet": {"id": outlet_id, "name": outlet_name},
                            "published_at": iso_utc(published_at),
                            "is_original": original,
                        },
                    )
                )
        if entry is None:
            return None
        entry["disclaimer"] = self._disclaimer(policy, locale, disclaimers)
        entry["locale_requested"] = locale
        entry["canonical"] = entry["original"]
        entry["members"] = [m for *_, m in sorted(members, key=lambda m: m[:3])]
        return entry

    def changes(self, since: int | None, locale: str, untranslated: bool = False) -> Json:
        """A ``ChangesPage`` body: stories changed after change ``since``; without it, a token for
        now and no changes.

        Each story is reported once with its *current* state (listed in this locale's feed →
        upsert, else removed), whatever the logged change said: the log says what to look at, the
        entries say what is true. Caveat: ids come from a sequence, so on PostgreSQL a change
        committed late with a lower id than one already handed out can be missed by a client that
        synced in between; writers that log changes should keep their transactions short.
        """
        with self.engine.connect() as conn:
            if since is None:
                newest = conn.execute(sa.select(sa.func.max(FEEDCHANGE.c.id))).scalar()
                return {"changes": [], "next_since": self.signer.since_token(newest or 0), "has_more": False}
            rows = conn.execute(
                sa.select(FEEDCHANGE.c.id, FEEDCHANGE.c.story_id)
                .where(FEEDCHANGE.c.id > since)
                .order_by(FEEDCHANGE.c.id)
                .limit(CHANGES_PER_PAGE + 1)
            ).all()
            has_more = len(rows) > CHANGES_PER_PAGE
            rows = rows[:CHANGES_PER_PAGE]
            latest: dict[int, int] = {}
            for change_id, story_id in rows:
                latest[story_id] = change_id
            visible: set[int] = set()
            if latest:
                listed = ENTRY.c.reach < BY_ID_ONLY if untranslated else ENTRY.c.reach == IN_CHAIN
                visible = {
                    r[0]
                    for r in conn.execute(
                        sa.select(ENTRY.c.story_id).where(
                            ENTRY.c.locale == locale, ENTRY.c.story_id.in_(sorted(latest)), listed
                        )
                    )
                }
        changes = [
            {"id": sid, "change": "upsert" if sid in visible else "removed"}
            for sid, _ in sorted(latest.items(), key=lambda kv: kv[1])
        ]
        next_since = rows[-1][0] if rows else since
        return {"changes": changes, "next_since": self.signer.since_token(next_since), "has_more": has_more}

"""The rows of one page statement (``api.feed_statements``), run and grouped per story."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from api.dbapi import compiled_for
from api.feed_statements import MEMBER, RELATED_MEMBER
from api.locales import member_locale


@dataclass(slots=True)
class MemberRow:
    """A live (not tombstoned) member of a story, as locale choice and rendering need it.

    ``published_at`` is naive UTC, as the database returns it: it is only compared here."""

    id: int
    story_id: int
    url: str | None
    title: str
    summary_html: str
    published_at: datetime
    image: str | None
    effective_locale: str
    tickers: tuple[str, ...]
    outlet_id: str
    outlet_name: str
    policy: str
    is_original: bool


@dataclass(slots=True)
class StoryRow:
    id: int
    first_published_at: datetime
    """Naive UTC."""
    pinned: bool
    pinned_until: datetime | None = None
    """Naive UTC."""
    pinned_locale: str | None = None
    titles: dict[str, str] = field(default_factory=dict)
    """Editors' titles per served locale."""

    def pin_active(self, locale: str, now: datetime) -> bool:
        """Pinned on top of ``locale``'s feed at ``now`` (naive UTC)."""
        return (
            self.pinned
            and (self.pinned_until is None or self.pinned_until > now)
            and (self.pinned_locale is None or self.pinned_locale == locale)
        )


@dataclass(slots=True)
class RelatedMember:
    """A live member of a related story: just enough to link to it in the reader's locale."""

    id: int
    story_id: int
    url: str | None
    title: str
    published_at: datetime
    effective_locale: str
    is_original: bool


@dataclass(slots=True)
class PageRows:
    """Everything one page statement returned, grouped."""

    stories: list[StoryRow] = field(default_factory=list)
    """Newest first."""
    members: dict[int, list[MemberRow]] = field(default_factory=lambda: defaultdict(list))
    related: dict[int, list[int]] = field(default_factory=dict)
    """Story id → related story ids, most related first."""
    related_members: dict[int, list[RelatedMember]] = field(default_factory=dict)
    disclaimers: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    """(policy, locale) → (text, version) of the newest editors' version."""


@lru_cache(maxsize=1024)
def _titles_cached(raw: str) -> tuple[tuple[str, str], ...]:
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(value, dict):
        return ()
    return tuple((k, v) for k, v in value.items() if isinstance(k, str) and isinstance(v, str) and v)


def _titles(raw: str | None) -> dict[str, str]:
    """The stored JSON object of editors' titles (empty almost always: no parse then)."""
    if not raw or raw in ("{}", "null"):
        return {}
    return dict(_titles_cached(raw))


@lru_cache(maxsize=1024)
def _tickers(raw: str | None) -> tuple[str, ...]:
    """The stored JSON list of tickers (few distinct values: parsed once per process)."""
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


def read_page(conn: sa.Connection, statement: sa.CompoundSelect[Any], params: Mapping[str, Any]) -> PageRows:
    """Run a page statement and group its rows (one round trip)."""
    out = PageRows()
    stories: dict[int, StoryRow] = {}
    scored: dict[int, dict[int, float]] = defaultdict(dict)
    related: dict[int, dict[int, RelatedMember]] = defaultdict(dict)
    for (
        kind, sid, other, score, first_published_at, pinned, pinned_until, pinned_locale, titles,
        canonical_item_id, item_id, link, title,
        summary_html, published_at, image, locale, language, tickers, outlet_id, outlet_name, policy,
        version, text,
    ) in compiled_for(statement, conn.dialect).rows(conn, params):  # fmt: skip
        if kind == MEMBER:
            if sid not in stories:
                stories[sid] = StoryRow(
                    sid, first_published_at, bool(pinned), pinned_until, pinned_locale, _titles(titles)
                )
            out.members[sid].append(
                MemberRow(
                    item_id,
                    sid,
                    link,
                    title or "",
                    summary_html or "",
                    published_at,
                    image,
                    member_locale(locale, language) if language else locale,
                    _tickers(tickers),
                    outlet_id,
                    outlet_name,
                    policy,
                    canonical_item_id == item_id,
                )
            )
        elif kind == RELATED_MEMBER:
            if sid == other:
                continue
            mine = scored[sid]
            mine[other] = max(score or 0.0, mine.get(other, float("-inf")))
            related[other][item_id] = RelatedMember(
                item_id,
                other,
                link,
                title or "",
                published_at,
                member_locale(locale, language) if language else locale,
                canonical_item_id == item_id,
            )
        else:
            out.disclaimers[(policy, locale)] = (text or "", str(version))
    out.stories = sorted(stories.values(), key=lambda s: (s.first_published_at, s.id), reverse=True)
    out.related = {
        sid: [o for o, _ in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))]
        for sid, others in scored.items()
    }
    out.related_members = {sid: list(ms.values()) for sid, ms in related.items()}
    return out

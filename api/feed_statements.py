"""The SQL of a feed page and of one story: one statement, one round trip (see ``api.feed``).

A CTE ``page`` picks the stories — keyset on (first_published_at, id), newest first,
``limit + 1`` — and three parts are stacked with UNION ALL, told apart by their ``kind``:
``MEMBER``, ``RELATED_MEMBER`` and ``DISCLAIMER_ROW``. LIMIT is a literal (one statement per limit),
so PostgreSQL keeps a generic plan for the prepared statement.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.models import UTCDateTime

STORY = SQLModel.metadata.tables["story"]
ITEM = SQLModel.metadata.tables["item"]
SOURCE = SQLModel.metadata.tables["source"]
OUTLET = SQLModel.metadata.tables["outlet"]
RELATED = SQLModel.metadata.tables["relatedstory"]
DISCLAIMER = SQLModel.metadata.tables["disclaimer"]
FEEDCHANGE = SQLModel.metadata.tables["feedchange"]


def live_member(never: frozenset[str]) -> sa.Exists:
    cond = [ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false()]
    # one plain bind per locale, not an expanding IN: ``CompiledStatement`` binds values as they are
    cond += [ITEM.c.locale != sa.bindparam(f"never_{i}", loc) for i, loc in enumerate(sorted(never))]
    return sa.exists().where(*cond)


MEMBER, RELATED_MEMBER, DISCLAIMER_ROW = 0, 1, 2

_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "kind": sa.Integer(),
    "sid": sa.Integer(),
    "other": sa.Integer(),
    "score": sa.Float(),
    "first_published_at": sa.DateTime(),
    "pinned": sa.Boolean(),
    "pinned_until": sa.DateTime(),
    "pinned_locale": sa.String(),
    "titles": sa.Text(),
    "canonical_item_id": sa.Integer(),
    "item_id": sa.Integer(),
    "link": sa.String(),
    "title": sa.String(),
    "summary_html": sa.Text(),
    "published_at": sa.DateTime(),
    "image": sa.String(),
    "locale": sa.String(),
    "language": sa.String(),
    "tickers": sa.Text(),
    "outlet_id": sa.String(),
    "outlet_name": sa.String(),
    "policy": sa.String(),
    "version": sa.Integer(),
    "text": sa.Text(),
}
"""The columns every part of the page statement returns (NULL where a part has nothing), in order.

Datetimes are plain ``DateTime`` (naive UTC), not ``UTCDateTime``: see the module docstring."""


def _part(kind: int, **given: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(
        *(
            (
                sa.literal_column(str(kind), type_)
                if name == "kind"
                else sa.type_coerce(given[name], type_)
                if name in given
                else sa.cast(sa.null(), type_)
            ).label(name)
            for name, type_ in _COLUMNS.items()
        )
    )


def _page_statement(stories: sa.Select[Any]) -> sa.CompoundSelect[Any]:
    """Members, related members and disclaimers of the stories ``stories`` selects (ordered, limited)."""
    page = stories.cte("page")
    members = _part(
        MEMBER,
        sid=page.c.id,
        first_published_at=page.c.first_published_at,
        pinned=page.c.pinned,
        pinned_until=page.c.pinned_until,
        pinned_locale=page.c.pinned_locale,
        titles=sa.cast(page.c.titles, sa.Text),
        canonical_item_id=page.c.canonical_item_id,
        item_id=ITEM.c.id,
        link=ITEM.c.link,
        title=ITEM.c.title,
        summary_html=ITEM.c.summary_html,
        published_at=ITEM.c.published_at,
        image=ITEM.c.image,
        locale=ITEM.c.locale,
        language=ITEM.c.language,
        tickers=sa.cast(ITEM.c.tickers, sa.Text),
        outlet_id=SOURCE.c.outlet_id,
        outlet_name=OUTLET.c.name,
        policy=OUTLET.c.disclaimer_policy,
    ).select_from(
        page.join(ITEM, sa.and_(ITEM.c.story_id == page.c.id, ITEM.c.tombstone == sa.false()))
        .join(SOURCE, SOURCE.c.id == ITEM.c.source_id)
        .join(OUTLET, OUTLET.c.id == SOURCE.c.outlet_id)
    )
    in_page = sa.select(page.c.id)
    pairs = sa.union_all(
        sa.select(
            RELATED.c.story_id.label("mine"), RELATED.c.related_id.label("other"), RELATED.c.score
        ).where(RELATED.c.story_id.in_(in_page)),
        sa.select(RELATED.c.related_id, RELATED.c.story_id, RELATED.c.score).where(
            RELATED.c.related_id.in_(in_page)
        ),
    ).subquery("pairs")
    related = _part(
        RELATED_MEMBER,
        sid=pairs.c.mine,
        other=pairs.c.other,
        score=pairs.c.score,
        canonical_item_id=STORY.c.canonical_item_id,
        item_id=ITEM.c.id,
        link=ITEM.c.link,
        title=ITEM.c.title,
        published_at=ITEM.c.published_at,
        locale=ITEM.c.locale,
        language=ITEM.c.language,
    ).select_from(
        pairs.join(STORY, sa.and_(STORY.c.id == pairs.c.other, STORY.c.hidden == sa.false())).join(
            ITEM, sa.and_(ITEM.c.story_id == STORY.c.id, ITEM.c.tombstone == sa.false())
        )
    )
    newer = DISCLAIMER.alias("newer")
    disclaimers = _part(
        DISCLAIMER_ROW,
        policy=DISCLAIMER.c.policy,
        locale=DISCLAIMER.c.locale,
        version=DISCLAIMER.c.version,
        text=DISCLAIMER.c.text,
    ).where(
        ~sa.exists().where(
            newer.c.policy == DISCLAIMER.c.policy,
            newer.c.locale == DISCLAIMER.c.locale,
            newer.c.version > DISCLAIMER.c.version,
        )
    )
    return sa.union_all(members, related, disclaimers)


_STORY_COLUMNS = (
    STORY.c.id,
    STORY.c.first_published_at,
    STORY.c.pinned,
    STORY.c.pinned_until,
    STORY.c.pinned_locale,
    STORY.c.titles,
    STORY.c.canonical_item_id,
)


def _pin_active() -> sa.ColumnElement[bool]:
    """An editor's pin holds for this request's locale (``pin_locale``) at ``now``."""
    now = sa.bindparam("now", type_=UTCDateTime())
    return sa.and_(
        STORY.c.pinned == sa.true(),
        sa.or_(STORY.c.pinned_until.is_(None), STORY.c.pinned_until > now),
        sa.or_(
            STORY.c.pinned_locale.is_(None),
            STORY.c.pinned_locale == sa.bindparam("pin_locale", type_=sa.String()),
        ),
    )


@lru_cache(maxsize=256)
def feed_statement(
    keyset: bool, tickers: int, by_outlet: bool, never: frozenset[str], limit: int, pinned: bool = False
) -> sa.CompoundSelect[Any]:
    """The page statement of one request shape, built once: SQLAlchemy statement construction costs
    more CPU than the database spends running it. ``limit`` (stories to fetch) is rendered as a
    literal; bind ``now`` and ``pin_locale`` and, by shape, ``after_ts``/``after_id``, ``ticker_0``…
    (LIKE patterns) and ``outlet``. ``pinned``: the stories pinned on top of this locale's feed
    (they are left out of the ordinary pages, so a story is never listed twice)."""
    q = sa.select(*_STORY_COLUMNS).where(
        STORY.c.hidden == sa.false(), live_member(never), _pin_active() if pinned else ~_pin_active()
    )
    if keyset:
        after = sa.tuple_(
            sa.bindparam("after_ts", type_=UTCDateTime()), sa.bindparam("after_id", type_=sa.Integer())
        )
        q = q.where(sa.tuple_(STORY.c.first_published_at, STORY.c.id) < after)
    if tickers:
        as_text = sa.cast(ITEM.c.tickers, sa.Text)
        q = q.where(
            sa.exists().where(
                ITEM.c.story_id == STORY.c.id,
                ITEM.c.tombstone == sa.false(),
                sa.or_(*(as_text.like(sa.bindparam(f"ticker_{i}", type_=sa.Text())) for i in range(tickers))),
            )
        )
    if by_outlet:
        q = q.where(
            sa.exists()
            .select_from(ITEM.join(SOURCE, SOURCE.c.id == ITEM.c.source_id))
            .where(
                ITEM.c.story_id == STORY.c.id,
                ITEM.c.tombstone == sa.false(),
                SOURCE.c.outlet_id == sa.bindparam("outlet", type_=sa.String()),
            )
        )
    q = q.order_by(STORY.c.first_published_at.desc(), STORY.c.id.desc()).limit(
        sa.literal_column(str(int(limit)), sa.Integer)
    )
    return _page_statement(q)


@lru_cache(maxsize=1)
def story_statement() -> sa.CompoundSelect[Any]:
    """One visible story with its live members; bind ``story_id``."""
    return _page_statement(
        sa.select(*_STORY_COLUMNS).where(
            STORY.c.id == sa.bindparam("story_id", type_=sa.Integer()), STORY.c.hidden == sa.false()
        )
    )

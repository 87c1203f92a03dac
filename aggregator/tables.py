"""The tables the poll path reads and writes (``source``, ``item``, ``feedchange``), in SQLAlchemy Core.

Their columns are defined once, here; ``aggregator.models`` maps its ``Source``, ``Item`` and
``FeedChange`` onto fresh copies of the same definitions (:func:`columns`, :func:`constraints`),
so the schema the migrations check is this one. The poll round (claim, store, release) uses
these Core tables directly: a round that finds every feed unchanged never imports SQLModel, the
ORM or the other tables (``python -X importtime main.py poll --once``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import SchemaItem
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC on every backend and hands back aware UTC datetimes."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _text(name: str, length: int, *, nullable: bool = True, **kw: Any) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length), nullable=nullable, **kw)


def _source() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        _text("url", 2000, nullable=False, unique=True),
        sa.Column("outlet_id", sa.String(64), sa.ForeignKey("outlet.id"), nullable=False, index=True),
        _text("locale", 8, nullable=False),
        _text("title", 500),
        sa.Column("enabled", sa.Boolean, nullable=False, default=True),
        _text("etag", 500),
        _text("last_modified", 100),
        sa.Column("next_check_at", UTCDateTime, nullable=False, index=True, default=utcnow),
        sa.Column("interval_s", sa.Integer, nullable=False, default=900),
        sa.Column("error_count", sa.Integer, nullable=False, default=0),
        _text("last_error", 2000),
        _text("last_bozo", 2000),
        sa.Column("last_checked_at", UTCDateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("skipped_entries", sa.Integer, nullable=False, default=0, server_default=sa.text("0")),
        _text("lease_owner", 100),
        sa.Column("lease_until", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    ]


def _item() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("source.id"), nullable=False, index=True),
        sa.Column("story_id", sa.Integer, sa.ForeignKey("story.id"), nullable=True, index=True),
        _text("identity", 64, nullable=False),
        _text("guid", 2000),
        _text("link", 2000, index=True),
        _text("title", 2000, nullable=False, default=""),
        sa.Column("summary_html", sa.Text, nullable=False, default=""),
        sa.Column("content_html", sa.Text, nullable=False, default=""),
        sa.Column("summary_text", sa.Text, nullable=False, default="", server_default=sa.text("''")),
        sa.Column("text", sa.Text, nullable=False, default=""),
        sa.Column("published_at", UTCDateTime, nullable=False, index=True),
        sa.Column("fetched_at", UTCDateTime, nullable=False, default=utcnow),
        sa.Column("updated_at", UTCDateTime, nullable=False, default=utcnow),
        _text("image", 2000),
        _text("author", 500),
        _text("locale", 8, nullable=False),
        _text("language", 8),
        sa.Column("tickers", sa.JSON, nullable=False, default=list),
        sa.Column("links", sa.JSON, nullable=False, default=dict),
        _text("content_hash", 64, nullable=False),
        sa.Column("tombstone", sa.Boolean, nullable=False, default=False),
        sa.Column("dedupe_features", sa.LargeBinary, nullable=True),
        _text("dedupe_key", 64),
        sa.UniqueConstraint("source_id", "identity", name="uq_item_source_identity"),
    ]


def _feedchange() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("story_id", sa.Integer, nullable=False, index=True),
        _text("change", 16, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False, default=utcnow),
    ]


_SCHEMAS: dict[str, Callable[[], list[SchemaItem]]] = {
    "source": _source,
    "item": _item,
    "feedchange": _feedchange,
}


def columns(table: str) -> dict[str, sa.Column[Any]]:
    """Fresh (unattached) columns of ``table`` by name, for a model to map."""
    return {c.name: c for c in _SCHEMAS[table]() if isinstance(c, sa.Column)}


def constraints(table: str) -> tuple[SchemaItem, ...]:
    """Fresh table-level constraints of ``table`` (its ``__table_args__``)."""
    return tuple(c for c in _SCHEMAS[table]() if not isinstance(c, sa.Column))


metadata = sa.MetaData()
"""The Core tables' own metadata (never used to create tables: the migrations do)."""
SOURCE = sa.Table("source", metadata, *_source())
ITEM = sa.Table("item", metadata, *_item())
FEEDCHANGE = sa.Table("feedchange", metadata, *_feedchange())

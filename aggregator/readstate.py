"""Readers' own state for the Google Reader API: read and starred flags per API key and story, and
the outlets' feed numbers.

A flag lives in ``greaderstate`` (no row: unread, not starred), written with one upsert per call on
both engines, so two devices of one key marking the same story at once both succeed. Only stories
that exist get rows: ids a client makes up are dropped. ``greaderfeed`` gives each outlet a small
number the first time it is listed and keeps it forever (``feed/<n>`` is what apps store).

Every write of a key's flags also says so in the same transaction, as a change of pages would
(:func:`touch_state`: a span of the key's own feed key, ``gr:<key id>``, through
``aggregator.entries.touch_pages``): answers built from the flags (``stream/items/ids``,
``unread-count``) are kept per key until it arrives, so one reader's marks never drop another
reader's kept answers, and feed pages (whose keys are locales) never meet it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from aggregator.entries import touch_pages
from aggregator.models import utcnow

STATE = SQLModel.metadata.tables["greaderstate"]
FEED = SQLModel.metadata.tables["greaderfeed"]
_OUTLET = SQLModel.metadata.tables["outlet"]
_STORY = SQLModel.metadata.tables["story"]
CHUNK = 500
STATE_KEY_PREFIX = "gr:"
"""Feed keys of readers' state (``gr:<key id>``): no locale starts so, so no feed page meets them."""


def state_key(key_id: int) -> str:
    """The feed key a change of ``key_id``'s flags is told by (at most 15 characters)."""
    return f"{STATE_KEY_PREFIX}{int(key_id)}"


def touch_state(conn: sa.Connection, key_id: int) -> None:
    """Tell every API process, in the caller's transaction, that ``key_id``'s flags change when it
    commits: a change of the span (``gr:<key id>``, unbounded), sent the way changes of pages are."""
    touch_pages(conn, [(state_key(key_id), None, None)])


def _insert(conn: sa.Connection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(STATE)


def set_flags(
    conn: sa.Connection,
    key_id: int,
    story_ids: Iterable[int],
    *,
    read: bool | None = None,
    starred: bool | None = None,
) -> int:
    """Set ``read`` and/or ``starred`` (None: leave as is) of ``key_id`` on the existing stories
    among ``story_ids``; returns how many stories that was."""
    if read is None and starred is None:
        return 0
    ids = sorted(set(story_ids))
    now = utcnow()
    changed: dict[str, Any] = {"updated_at": now}
    if read is not None:
        changed["read"] = read
    if starred is not None:
        changed["starred"] = starred
    done = 0
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        known = [r[0] for r in conn.execute(sa.select(_STORY.c.id).where(_STORY.c.id.in_(chunk)))]
        if not known:
            continue
        rows = [
            {
                "key_id": key_id,
                "story_id": sid,
                "read": bool(read),
                "starred": bool(starred),
                "updated_at": now,
            }
            for sid in known
        ]
        insert = _insert(conn)
        conn.execute(
            insert.on_conflict_do_update(index_elements=[STATE.c.key_id, STATE.c.story_id], set_=changed),
            rows,
        )
        done += len(known)
    if done:
        touch_state(conn, key_id)
    return done


def mark_read_from(
    conn: sa.Connection, key_id: int, story_ids: sa.Select[Any], params: Mapping[str, Any] | None = None
) -> None:
    """Mark read every story ``story_ids`` (a one-column select, with a WHERE; ``params`` its
    binds) selects: one INSERT … SELECT … ON CONFLICT, whatever the number of stories."""
    now = utcnow()
    sub = story_ids.subquery("marked")
    source = sa.select(
        sa.literal(key_id, sa.Integer()),
        sub.c[0],
        sa.true(),
        sa.false(),
        sa.literal(now, STATE.c.updated_at.type),
    ).where(sa.true())
    insert = _insert(conn).from_select(["key_id", "story_id", "read", "starred", "updated_at"], source)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[STATE.c.key_id, STATE.c.story_id], set_={"read": True, "updated_at": now}
        ),
        dict(params or {}),
    )
    touch_state(conn, key_id)


def feed_numbers(engine: sa.Engine) -> Mapping[str, int]:
    """outlet id → its feed number, numbering the outlets that have none yet (a process racing this
    one for the same outlet loses quietly and reads the winner's number)."""
    query = sa.select(FEED.c.outlet_id, FEED.c.id)
    with engine.connect() as conn:
        numbers = {o: n for o, n in conn.execute(query)}
        missing = [
            r[0] for r in conn.execute(sa.select(_OUTLET.c.id).order_by(_OUTLET.c.id)) if r[0] not in numbers
        ]
    for outlet_id in missing:
        try:
            with engine.begin() as conn:
                conn.execute(sa.insert(FEED).values(outlet_id=outlet_id))
        except sa.exc.IntegrityError:
            pass
    if missing:
        with engine.connect() as conn:
            numbers = {o: n for o, n in conn.execute(query)}
    return numbers

"""greader: the Google Reader API's reader state, feed numbers, key locales, served outlets, store times

Revision ID: 0030_greader
Revises: 0010_editorial
Create Date: 2026-12-07

Native reader apps sync through ``/greader`` (``api.greader``): each API key has a locale
(``apikey.locale``, ``en`` for the keys made before); ``greaderstate`` holds a key's read and
starred flags per story; ``greaderfeed`` numbers the outlets (``feed/<id>``); each feed entry names
the outlet of the member it serves (``storyentry.outlet_id``, filled here from the stored entry),
the feed that lists it; ``story.stored_at`` is when babelwire stored the story (``ot``/``nt``),
filled here from its members' first fetch.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030_greader"
down_revision: str | Sequence[str] | None = "0010_editorial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apikey", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=8), nullable=False, server_default="en"))
    with op.batch_alter_table("story", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("stored_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("outlet_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_storyentry_outlet", "storyentry", ["locale", "outlet_id", "reach", "published_at", "story_id"]
    )
    op.create_table(
        "greaderfeed",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("outlet_id", sa.String(length=64), sa.ForeignKey("outlet.id"), nullable=False, unique=True),
    )
    op.create_table(
        "greaderstate",
        sa.Column("key_id", sa.Integer(), sa.ForeignKey("apikey.id"), primary_key=True),
        sa.Column("story_id", sa.Integer(), primary_key=True),
        sa.Column("read", sa.Boolean(), nullable=False),
        sa.Column("starred", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.execute(
        "UPDATE story SET stored_at = coalesce("
        "(SELECT min(item.fetched_at) FROM item WHERE item.story_id = story.id), first_published_at)"
    )
    served = (
        "json_extract(body || '}', '$.outlet.id')"
        if op.get_bind().dialect.name == "sqlite"
        else "(body || '}')::json -> 'outlet' ->> 'id'"
    )
    op.execute(f"UPDATE storyentry SET outlet_id = {served}")


def downgrade() -> None:
    op.drop_table("greaderstate")
    op.drop_table("greaderfeed")
    op.drop_index("ix_storyentry_outlet", table_name="storyentry")
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.drop_column("outlet_id")
    with op.batch_alter_table("story", recreate="never") as batch_op:
        batch_op.drop_column("stored_at")
    with op.batch_alter_table("apikey", recreate="never") as batch_op:
        batch_op.drop_column("locale")

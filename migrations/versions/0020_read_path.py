"""read path: precomputed localized feed entries, filter rows, shared state, summary text

Revision ID: 0020_read_path
Revises: 0004
Create Date: 2026-12-07

A feed page becomes one index range scan on (locale, published_at, story_id) of ``storyentry``,
whose rows the writers (dedupe, re-polls, editors) keep current through
``aggregator.entries.refresh_story_entries``; ``storyticker``/``storyoutlet`` make a filter an index
range scan too, whatever it matches. ``appstate`` holds what every process shares (the generated
cursor secret, the fallback table the entries were written with). ``item.summary_text`` is the plain
summary worked out at ingest. The new tables start empty: the API writes every story's entries at
start when they were never written (or were written with another fallback table).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_read_path"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TABLE ADD COLUMN in place on SQLite too: copying ``item`` into a new table (the batch
    # default) is refused by the foreign keys that point at it.
    with op.batch_alter_table("item", recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column("summary_text", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
    op.create_table(
        "appstate",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "storyentry",
        sa.Column("locale", sa.String(length=8), primary_key=True),
        sa.Column("story_id", sa.Integer(), primary_key=True),
        sa.Column("published_at", sa.DateTime(), nullable=False),
        sa.Column("reach", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    op.create_index("ix_storyentry_page", "storyentry", ["locale", "reach", "published_at", "story_id"])
    op.create_index("ix_storyentry_all", "storyentry", ["locale", "published_at", "story_id"])
    op.create_table(
        "storyticker",
        sa.Column("story_id", sa.Integer(), primary_key=True),
        sa.Column("ticker", sa.String(length=16), primary_key=True),
        sa.Column("published_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_storyticker_page", "storyticker", ["ticker", "published_at", "story_id"])
    op.create_table(
        "storyoutlet",
        sa.Column("story_id", sa.Integer(), primary_key=True),
        sa.Column("outlet_id", sa.String(length=64), primary_key=True),
        sa.Column("published_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_storyoutlet_page", "storyoutlet", ["outlet_id", "published_at", "story_id"])


def downgrade() -> None:
    op.drop_table("storyoutlet")
    op.drop_table("storyticker")
    op.drop_table("storyentry")
    op.drop_table("appstate")
    with op.batch_alter_table("item", recreate="never") as batch_op:
        batch_op.drop_column("summary_text")

"""api indexes: the feed's keyset order

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25

The feed reads stories newest first by (first_published_at, id) and resumes after a cursor with
a row comparison on the same pair; a composite index serves both without a sort, at any depth.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("story") as batch_op:
        batch_op.create_index("ix_story_feed_order", ["first_published_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("story") as batch_op:
        batch_op.drop_index("ix_story_feed_order")

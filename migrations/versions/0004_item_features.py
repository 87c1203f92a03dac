"""item features: dedupe's per-item feature cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Every dedupe run compares new items with the stored items of a time window around them; keeping
each item's extracted features (and the key they were extracted for) next to the item spares
re-extracting thousands of items on every poll round. Both columns are nullable: an empty cache
only means the features are extracted once more.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("item") as batch_op:
        batch_op.add_column(sa.Column("dedupe_features", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place; the batch default would copy ``item`` into a new
    # table and drop the old one, which the foreign keys of ``mergedecision`` refuse.
    with op.batch_alter_table("item", recreate="never") as batch_op:
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("dedupe_features")

"""faults: a source counts the malformed entries it skipped

Revision ID: 0040_faults
Revises: 0030_greader
Create Date: 2026-12-07

One bad entry costs only itself: parse and normalize skip an entry they cannot read (wrong types in a
JSON Feed item, a guid or link longer than the item's columns, …) and keep the feed's others;
``source.skipped_entries`` adds up how many, so ``sources list`` and the admin API show it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040_faults"
down_revision: str | Sequence[str] | None = "0030_greader"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place on SQLite too: ``source`` is pointed at by foreign keys, so no table copy.
    with op.batch_alter_table("source", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("skipped_entries", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("source", recreate="never") as batch_op:
        batch_op.drop_column("skipped_entries")

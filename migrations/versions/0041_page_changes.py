"""page changes: what a write of entries changed, so API processes drop only the kept pages it touches

Revision ID: 0041_page_changes
Revises: 0040_faults
Create Date: 2026-12-07

Every writer of story entries records, in its transaction, the locales and published-at ranges it
changed (``aggregator.entries.touch_pages``); an API process on SQLite reads the rows after the last
one it saw (a primary-key range scan per request) and drops only the kept pages whose range they
meet. AUTOINCREMENT: a ``seq`` is never reused, so a reader never misses a change after a prune.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0041_page_changes"
down_revision: str | Sequence[str] | None = "0040_faults"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pagechange",
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("lo", sa.DateTime(), nullable=True),
        sa.Column("hi", sa.DateTime(), nullable=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("pagechange")

"""editorial: API keys, audit log, review verdicts, story pins and titles, override payloads

Revision ID: 0010_editorial
Revises: 0020_read_path
Create Date: 2026-12-07

The admin API and dashboard authenticate with API keys (only a sha256 is stored), write one
audit row per action, and keep editors' story edits as ``editorialoverride`` rows (now with a
JSON payload for pins and titles) that dedupe re-applies on every run; ``story`` gets the state
those edits set (pin end and locale, titles per locale), and each precomputed feed entry the end of
the pin it carries in its locale (``storyentry.pinned_until``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_editorial"
down_revision: str | Sequence[str] | None = "0020_read_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "apikey",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "auditlog",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index("ix_auditlog_at", "auditlog", ["at"])
    op.create_index("ix_auditlog_action", "auditlog", ["action"])
    op.create_table(
        "reviewverdict",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_link", sa.String(length=2000), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("decision_kind", sa.String(length=16), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_reviewverdict_item_link", "reviewverdict", ["item_link"])
    with op.batch_alter_table("story") as batch_op:
        batch_op.add_column(sa.Column("pinned_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("pinned_locale", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("titles", sa.JSON(), nullable=True))
    with op.batch_alter_table("editorialoverride") as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("pinned_until", sa.DateTime(), nullable=True))
    op.create_index("ix_storyentry_pinned", "storyentry", ["locale", "pinned_until"])


def downgrade() -> None:
    op.drop_index("ix_storyentry_pinned", table_name="storyentry")
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.drop_column("pinned_until")
    with op.batch_alter_table("editorialoverride", recreate="never") as batch_op:
        batch_op.drop_column("payload")
    with op.batch_alter_table("story", recreate="never") as batch_op:
        batch_op.drop_column("titles")
        batch_op.drop_column("pinned_locale")
        batch_op.drop_column("pinned_until")
    op.drop_table("reviewverdict")
    op.drop_table("auditlog")
    op.drop_table("apikey")

"""greader_speed: a stamp per feed entry, so kept Google Reader items are checked without bodies

Revision ID: 0060_greader_speed
Revises: 0040_faults
Create Date: 2026-12-07

``storyentry.stamp`` is a random number each write of an entry draws anew (the model's default on
insert; entries are rewritten by delete + insert): ``api.greader`` keeps every rendered item per
process and checks it against the stamp, read with the key's flags for 150 items in one statement
on ``ix_storyentry_stamp`` (covering: locale, story, stamp, policy, served outlet) instead of the
bodies. Existing entries get 0 (a constant default: no table rewrite on either engine).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0060_greader_speed"
down_revision: str | Sequence[str] | None = "0041_page_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("stamp", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index(
        "ix_storyentry_stamp", "storyentry", ["locale", "story_id", "stamp", "policy", "outlet_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_storyentry_stamp", table_name="storyentry")
    with op.batch_alter_table("storyentry", recreate="never") as batch_op:
        batch_op.drop_column("stamp")

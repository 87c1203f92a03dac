"""Models and migrations cannot drift: Alembic's autogenerate finds nothing to add to head.

The ``engine`` fixture migrates a fresh database through the real revisions, on SQLite and on
PostgreSQL; ``compare_metadata`` then diffs it against the tables the models declare (columns,
types, nullability, server defaults, indexes, unique constraints, foreign keys). Any difference
is listed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import aggregator.models  # noqa: F401  (registers the tables on SQLModel.metadata)


def differences(engine: sa.Engine, metadata: sa.MetaData) -> list[str]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        diff = compare_metadata(context, metadata)
    return [repr(d) for d in diff]


def test_migrated_database_matches_the_models(engine: sa.Engine) -> None:
    drift = differences(engine, SQLModel.metadata)
    assert drift == [], "models and migrations differ:\n" + "\n".join(drift)


def test_a_column_only_in_the_models_is_drift(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    for table in SQLModel.metadata.tables.values():
        table.to_metadata(metadata)
    metadata.tables["source"].append_column(sa.Column("drifted", sa.Integer, nullable=True))
    metadata.tables["item"].c.author.type = sa.String(length=50)
    drift = differences(engine, metadata)
    assert len(drift) == 2, drift
    assert any("add_column" in d and "drifted" in d for d in drift)
    assert any("modify_type" in d and "author" in d for d in drift)

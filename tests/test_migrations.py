import sqlalchemy as sa

from aggregator.migrate import current_revision, head_revision, upgrade


def test_migrations_reach_head_and_are_repeatable(engine: sa.Engine) -> None:
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # a second upgrade is a no-op
    names = set(sa.inspect(engine).get_table_names())
    assert {"outlet", "source", "item", "story", "mergedecision", "relatedstory"} <= names


def test_item_identity_is_unique_per_source(engine: sa.Engine) -> None:
    import pytest

    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO outlet (id, name, disclaimer_policy) VALUES ('o', 'O', 'none')"))
        c.execute(
            sa.text(
                "INSERT INTO source (url, outlet_id, locale, enabled, next_check_at, interval_s, error_count,"
                " created_at) VALUES ('http://x/f', 'o', 'en', true, '2025-01-01', 900, 0, '2025-01-01')"
            )
        )
    row = (
        "INSERT INTO item (source_id, identity, title, summary_html, content_html, text, published_at,"
        " fetched_at, updated_at, locale, tickers, links, content_hash, tombstone) VALUES"
        " (1, 'abc', 't', '', '', '', '2025-01-01', '2025-01-01', '2025-01-01', 'en', '[]', '{}', 'h', false)"
    )
    with engine.begin() as c:
        c.execute(sa.text(row))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as c:
        c.execute(sa.text(row))

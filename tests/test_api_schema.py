"""Schemathesis against the API's own OpenAPI document: whatever the schema allows, no 5xx.

Runs in-process (ASGI) on both databases, seeded with a few stories so generated ids, cursors
and filters reach real rows; the example count per operation is bounded to keep it quick.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import hypothesis
import pytest
import schemathesis
import sqlalchemy as sa
from schemathesis.checks import not_a_server_error
from starlette.exceptions import StarletteDeprecationWarning

from aggregator.settings import Settings
from api.app import create_app
from tests.test_api import SEEDS, T0, Member, Seeder

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    import starlette.testclient  # noqa: F401  (imported once here, quietly, before schemathesis uses it)


@pytest.fixture
def seeded(engine: sa.Engine) -> sa.Engine:
    seed = Seeder(engine)
    first = seed.story(Member("zh-TW", outlet="blocktempo", tickers=["BTC"]), Member("en"), Member("pt-BR"))
    second = seed.story(Member("ru"), Member("zh-CN", minutes=3), at=T0 + timedelta(hours=1))
    seed.story(Member("uk", tickers=["ETH"]), at=T0 + timedelta(hours=2))
    seed.relate(first, second)
    seed.change(first)
    seed.change(second, "removed")
    return engine


@pytest.mark.parametrize(
    ("mode", "cache_s"),
    [(schemathesis.GenerationMode.POSITIVE, 60.0), (schemathesis.GenerationMode.NEGATIVE, 0.0)],
    ids=["positive-cached", "negative-uncached"],
)
def test_no_server_errors(
    settings: Settings, seeded: sa.Engine, mode: schemathesis.GenerationMode, cache_s: float
) -> None:
    """Every operation, with data the schema allows (positive, through the response cache) and data
    it forbids (negative, straight to the database)."""
    app = create_app(settings, seeded, seed_disclaimers=SEEDS, response_cache_s=cache_s)
    api_schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = len(list(api_schema.get_all_operations()))

    @hypothesis.given(case=api_schema.as_strategy(mode))
    @hypothesis.settings(
        max_examples=20 * operations,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    call()


def test_admin_operations_with_a_key_no_server_errors(settings: Settings, seeded: sa.Engine) -> None:
    """The admin operations again, authenticated (an admin key), with data the schema allows."""
    from aggregator.db import session_scope
    from aggregator.editorial import CLI
    from aggregator.editorial.keys import create_key

    with session_scope(seeded) as s:
        key = create_key(s, CLI, "admin", "fuzzer")[1]
    app = create_app(settings, seeded, seed_disclaimers=SEEDS, response_cache_s=0.0)
    # every admin operation but revoking keys (the fuzzer would revoke its own)
    api_schema = (
        schemathesis.openapi.from_asgi("/openapi.json", app)
        .include(path_regex="^/v1/admin/")
        .exclude(path_regex=r"keys/\{key_id\}")
    )
    operations = len(list(api_schema.get_all_operations()))

    @hypothesis.given(case=api_schema.as_strategy())
    @hypothesis.settings(
        max_examples=8 * operations,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {key}"}, checks=[not_a_server_error]
        )
        statuses.append(response.status_code)

    statuses: list[int] = []
    call()
    # the key worked: most calls got past authentication, and some actions succeeded
    assert statuses.count(401) < len(statuses) // 2 and any(200 <= s < 300 for s in statuses)

"""Settings validate as pydantic's lax mode does (the ``pydantic-settings`` class they replaced):
every field and many inputs — environment text and Python values — are run through the settings
and through a pydantic model built from the same fields, and must give the same value or the same
one-line error."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from pydantic import Field, ValidationError, create_model, field_validator

from aggregator.settings import _AFTER, Settings, environment_values, load_settings
from core.errors import ConfigError

TYPES: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "str | None": str | None}


def pydantic_twin() -> Any:
    """A pydantic model of the same fields, bounds and after-validators: the oracle."""

    def after(name: str) -> Any:
        def check(cls: Any, v: str) -> str:
            try:
                return _AFTER[name](v, name)
            except ValueError as e:
                raise ValueError(str(e).removeprefix("Value error, ")) from None

        return field_validator(name)(classmethod(check))

    fields: dict[str, Any] = {
        f.name: (TYPES[str(f.type)], Field(default=f.default, **f.metadata))
        for f in dataclasses.fields(Settings)
    }
    validators = {f"check_{name}": after(name) for name in _AFTER}
    return create_model("Twin", __validators__=validators, **fields)


TWIN = pydantic_twin()

INPUTS: dict[str, list[Any]] = {
    "int": [
        "5",
        " 5 ",
        "5.0",
        "5.5",
        "1_000",
        "abc",
        "",
        "+7",
        "-1",
        "1e3",
        "0x10",
        "٣",
        5,
        5.0,
        5.5,
        True,
        99999999,
    ],
    "float": ["20", "20.5", " 1 ", "inf", "nan", "-inf", "abc", "", "1e2", "1_0", "0", 3, 0, True, 1e9],
    "bool": [
        "1",
        "0",
        "true",
        "False",
        "YES",
        "no",
        "on",
        "off",
        "t",
        "f",
        "y",
        "n",
        " true ",
        "2",
        "maybe",
        "",
        1,
        0,
        2,
    ],
    "str": ["x", "", "  http://a.example/ ", "https://", "ftp://x", "postgres://u@h/db", "sqlite:///x", 5],
    "str | None": ["0123456789abcdef", "short", "", None, 5],
}


def outcome(build: Any, name: str, value: Any) -> tuple[str, Any]:
    try:
        got = getattr(build(**{name: value}), name)
    except ValidationError as e:
        return "error", e.errors()[0]["msg"]
    except ValueError as e:
        return "error", getattr(e, "message", str(e))
    return "ok", ("nan" if isinstance(got, float) and math.isnan(got) else got)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Settings)])
def test_every_field_validates_as_pydantic_does(field: str) -> None:
    kind = str(Settings.model_fields[field].type)
    for value in INPUTS[kind]:
        assert outcome(Settings, field, value) == outcome(TWIN, field, value), (field, value)


def test_defaults_match_and_the_environment_is_read_in_any_case() -> None:
    assert dataclasses.asdict(Settings()) == TWIN().model_dump()
    env = {
        "BABELWIRE_PORT": "9000",
        "babelwire_allow_private_feeds": "yes",
        "BABELWIRE_NOPE": "x",
        "PORT": "1",
    }
    assert environment_values(env) == {"port": "9000", "allow_private_feeds": "yes"}


def test_load_settings_names_the_variable_of_the_first_bad_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BABELWIRE_TICK_S", "0")
    monkeypatch.setenv("BABELWIRE_MAX_BODY_BYTES", "lots")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "BABELWIRE_MAX_BODY_BYTES: Input should be a valid integer, unable to parse string as an integer"
    )
    monkeypatch.delenv("BABELWIRE_MAX_BODY_BYTES")
    with pytest.raises(ConfigError, match=r"^BABELWIRE_TICK_S: Input should be greater than 0$"):
        load_settings()
    assert load_settings(tick_s=2).tick_s == 2.0  # an override wins over the environment


def test_a_copy_is_validated_again() -> None:
    settings = load_settings(database_url="postgresql://u@h/db")
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.model_copy(update={"port": 1}).port == 1
    with pytest.raises(ValueError, match="less than or equal to 65535"):
        settings.model_copy(update={"port": 70000})

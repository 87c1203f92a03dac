"""Settings: one validated object, built once in ``main.py`` from ``BABELWIRE_*`` variables.

:func:`load_settings` reads ``BABELWIRE_`` + a field name (in any case; explicit overrides win;
unknown names are ignored) and validates every value as pydantic's lax mode would (a
``pydantic-settings`` class before): the same coercions from text, the same bounds, the same
one-line errors — ``tests/test_settings.py`` checks them against pydantic itself. Plain Python,
so a start does not import pydantic: a poll that finds every feed unchanged is mostly its imports.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from core.errors import ConfigError

DEFAULT_DB = "sqlite:///./data/babelwire.sqlite"
ENV_PREFIX = "BABELWIRE_"


class InvalidSetting(ValueError):
    """One field's value is invalid: ``field`` and pydantic's message for it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def setting(default: Any, **bounds: float) -> Any:
    """A field with bounds (``gt``, ``ge``, ``le``, ``min_length``), checked like pydantic's ``Field``."""
    return dataclasses.field(default=default, metadata=bounds)


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INT = re.compile(r"[+-]?[0-9](?:_?[0-9])*")


def _as_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in _TRUE | _FALSE:
        return v.lower() in _TRUE
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _as_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("Input should be a finite number")
        if v != int(v):
            raise ValueError("Input should be a valid integer, got a number with a fractional part")
        return int(v)
    if isinstance(v, str):
        text = v.strip()
        if _INT.fullmatch(text):
            return int(text)
        number = re.fullmatch(r"([+-]?[0-9]+)\.0*", text)
        if number:
            return int(number.group(1))
        raise ValueError("Input should be a valid integer, unable to parse string as an integer")
    raise ValueError("Input should be a valid integer")


def _as_float(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            pass
        raise ValueError("Input should be a valid number, unable to parse string as a number")
    raise ValueError("Input should be a valid number")


def _as_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    raise ValueError("Input should be a valid string")


def _as_optional_str(v: Any) -> str | None:
    return None if v is None else _as_str(v)


_KINDS: dict[str, Callable[[Any], Any]] = {
    "bool": _as_bool,
    "int": _as_int,
    "float": _as_float,
    "str": _as_str,
    "str | None": _as_optional_str,
}


def _check_bounds(v: Any, bounds: Mapping[str, float]) -> None:
    if v is None:
        return
    if "min_length" in bounds and len(v) < bounds["min_length"]:
        n = int(bounds["min_length"])
        raise ValueError(f"String should have at least {n} character{'s' if n != 1 else ''}")
    # In pydantic's order: a value breaking two bounds (nan) gets the same message.
    if "le" in bounds and not v <= bounds["le"]:
        raise ValueError(f"Input should be less than or equal to {bounds['le']}")
    if "ge" in bounds and not v >= bounds["ge"]:
        raise ValueError(f"Input should be greater than or equal to {bounds['ge']}")
    if "gt" in bounds and not v > bounds["gt"]:
        raise ValueError(f"Input should be greater than {bounds['gt']}")


def _http_url(v: str, name: str) -> str:
    v = v.strip()
    if v and not (v.startswith(("http://", "https://")) and v.split("://", 1)[1].strip("/")):
        raise ValueError("Value error, must be an http:// or https:// URL")
    return v.rstrip("/") if name == "public_url" else v


def _known_database(v: str, name: str) -> str:
    if not (v.startswith("sqlite:") or v.startswith("postgresql")):
        raise ValueError("Value error, must start with sqlite:/// or postgresql+psycopg://")
    if v.startswith("postgresql://") or v.startswith("postgres://"):
        v = "postgresql+psycopg://" + v.split("://", 1)[1]
    return v


_AFTER: dict[str, Callable[[str, str], str]] = {
    "public_url": _http_url,
    "websub_hub": _http_url,
    "database_url": _known_database,
}


@dataclass
class Settings:
    """Every knob of babelwire; validated when built (so a bad value fails before any work) and by
    :meth:`model_copy`. Built from the environment by :func:`load_settings`; ``Settings(...)``
    takes the given values only."""

    database_url: str = DEFAULT_DB
    allow_private_feeds: bool = False
    user_agent: str = "babelwire/0.1 (+https://github.com/babelwire/babelwire)"
    fetch_timeout_s: float = setting(20.0, gt=0, le=300)
    max_body_bytes: int = setting(10 * 1024 * 1024, gt=1024)
    max_redirects: int = setting(5, ge=0, le=20)
    per_host_concurrency: int = setting(2, ge=1, le=64)
    fetch_concurrency: int = setting(16, ge=1, le=512)
    min_interval_s: int = setting(300, ge=1)
    max_interval_s: int = setting(6 * 3600, ge=60)
    max_backoff_s: int = setting(24 * 3600, ge=60)
    lease_s: int = setting(300, ge=10)
    db_connect_timeout_s: int = setting(5, ge=1, le=300)
    """PostgreSQL: how long opening a connection may take before it fails (the database is down)."""
    db_statement_timeout_s: float = setting(30.0, ge=0, le=3600)
    """PostgreSQL: the longest one statement of the API may run (0: no limit); workers have none."""
    db_answer_timeout_s: float = setting(180.0, ge=1, le=3600)
    """PostgreSQL: the longest a process waits for any one answer of the server before it drops the
    connection (a frozen server); above dedupe's lock wait (120 s). The API waits at most its
    statement timeout + 5 s."""
    tick_s: float = setting(30.0, gt=0)
    background_nice: int = setting(10, ge=0, le=19)
    """The CPU priority (``nice``) of the processes that poll and dedupe (``worker``, ``serve``'s
    scheduler process, their parse/extraction processes): on shared cores the API answers first."""
    host: str = "127.0.0.1"
    port: int = setting(8000, ge=0, le=65535)
    cursor_secret: str | None = setting(None, min_length=16)
    """Signs feed cursors and since tokens. Unset: a random secret made once and kept in the
    database (``appstate``), shared by every process and kept across restarts."""
    feed_max_limit: int = setting(100, ge=1, le=1000)
    feed_default_limit: int = setting(20, ge=1, le=1000)
    cache_max_age_s: int = setting(30, ge=0)
    response_cache_s: float = setting(0.0, ge=0, le=60)
    """Lifetime of the API's per-process response micro-cache (capped by ``cache_max_age_s``; 0: off)."""
    locale_fallbacks: str = ""
    """Rows replacing the API's fallback table, e.g. ``uk=en,!ru;fr=es,en`` (api/locales.py)."""
    public_url: str = ""
    """Where readers reach this API (``https://news.example.org``): the base of the re-exported feeds'
    self links and WebSub topics. Empty: taken from each request's Host."""
    websub_hub: str = ""
    """A WebSub hub: announced in the re-exported feeds and pinged when new stories appear."""

    model_fields: ClassVar[dict[str, dataclasses.Field[Any]]]
    """The fields by name (as on a pydantic model)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            name = f.name
            try:
                value = _KINDS[str(f.type)](getattr(self, name))
                _check_bounds(value, f.metadata)
                if name in _AFTER:
                    value = _AFTER[name](value, name)
            except ValueError as e:
                raise InvalidSetting(name, str(e)) from None
            setattr(self, name, value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Settings:
        """A copy with ``update`` applied, validated again."""
        return dataclasses.replace(self, **(update or {}))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.database_url.split("sqlite:///", 1)[-1]
        return None if path in ("", ":memory:") else Path(path)


Settings.model_fields = {f.name: f for f in dataclasses.fields(Settings)}


def environment_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings given as ``BABELWIRE_*`` variables (names in any case), by field name."""
    prefix = ENV_PREFIX.lower()
    values: dict[str, str] = {}
    for key, value in (os.environ if environ is None else environ).items():
        name = key.lower()
        if name.startswith(prefix) and name[len(prefix) :] in Settings.model_fields:
            values[name[len(prefix) :]] = value
    return values


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and explicit overrides); ConfigError when invalid."""
    values = {**environment_values(), **overrides}
    try:
        return Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})  # type: ignore[arg-type]
    except InvalidSetting as e:
        raise ConfigError(f"{ENV_PREFIX}{e.field.upper()}: {e.message}") from None

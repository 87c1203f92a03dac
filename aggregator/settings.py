"""Settings: one validated object, built once in ``main.py`` from ``BABELWIRE_*`` variables.

A plain pydantic model read from the environment by :func:`load_settings` (variable names in any
case, ``BABELWIRE_`` + the field name; explicit overrides win; unknown names are ignored): the
same validation and errors as a ``pydantic-settings`` class, without importing that package on
every start (a poll that finds every feed unchanged is mostly its imports).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from core.errors import ConfigError

DEFAULT_DB = "sqlite:///./data/babelwire.sqlite"


ENV_PREFIX = "BABELWIRE_"


class Settings(BaseModel):
    """Every knob of babelwire; validated at start so a bad value fails before any work. Built from
    the environment by :func:`load_settings`; ``Settings(...)`` takes the given values only."""

    model_config = ConfigDict(extra="ignore")

    database_url: str = DEFAULT_DB
    allow_private_feeds: bool = False
    user_agent: str = "babelwire/0.1 (+https://github.com/babelwire/babelwire)"
    fetch_timeout_s: float = Field(default=20.0, gt=0, le=300)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    per_host_concurrency: int = Field(default=2, ge=1, le=64)
    fetch_concurrency: int = Field(default=16, ge=1, le=512)
    min_interval_s: int = Field(default=300, ge=1)
    max_interval_s: int = Field(default=6 * 3600, ge=60)
    max_backoff_s: int = Field(default=24 * 3600, ge=60)
    lease_s: int = Field(default=300, ge=10)
    db_connect_timeout_s: int = Field(default=5, ge=1, le=300)
    """PostgreSQL: how long opening a connection may take before it fails (the database is down)."""
    db_statement_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    """PostgreSQL: the longest one statement of the API may run (0: no limit); workers have none."""
    db_answer_timeout_s: float = Field(default=180.0, ge=1, le=3600)
    """PostgreSQL: the longest a process waits for any one answer of the server before it drops the
    connection (a frozen server); above dedupe's lock wait (120 s). The API waits at most its
    statement timeout + 5 s."""
    tick_s: float = Field(default=30.0, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cursor_secret: str | None = Field(default=None, min_length=16)
    """Signs feed cursors and since tokens. Unset: a random secret made once and kept in the
    database (``appstate``), shared by every process and kept across restarts."""
    feed_max_limit: int = Field(default=100, ge=1, le=1000)
    feed_default_limit: int = Field(default=20, ge=1, le=1000)
    cache_max_age_s: int = Field(default=30, ge=0)
    response_cache_s: float = Field(default=1.0, ge=0, le=60)
    """Lifetime of the API's per-process response micro-cache (capped by ``cache_max_age_s``; 0: off)."""
    locale_fallbacks: str = ""
    """Rows replacing the API's fallback table, e.g. ``uk=en,!ru;fr=es,en`` (api/locales.py)."""
    public_url: str = ""
    """Where readers reach this API (``https://news.example.org``): the base of the re-exported feeds'
    self links and WebSub topics. Empty: taken from each request's Host."""
    websub_hub: str = ""
    """A WebSub hub: announced in the re-exported feeds and pinged when new stories appear."""

    @field_validator("public_url", "websub_hub")
    @classmethod
    def _http_url(cls, v: str, info: ValidationInfo) -> str:
        v = v.strip()
        if v and not (v.startswith(("http://", "https://")) and v.split("://", 1)[1].strip("/")):
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/") if info.field_name == "public_url" else v

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not (v.startswith("sqlite:") or v.startswith("postgresql")):
            raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+psycopg://" + v.split("://", 1)[1]
        return v

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.database_url.split("sqlite:///", 1)[-1]
        return None if path in ("", ":memory:") else Path(path)


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
    try:
        return Settings.model_validate({**environment_values(), **overrides})
    except ValidationError as e:
        first = e.errors()[0]
        name = "BABELWIRE_" + "_".join(str(p) for p in first["loc"]).upper()
        raise ConfigError(f"{name}: {first['msg']}") from None

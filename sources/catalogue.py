"""The outlet catalogue: one TOML file per outlet in ``sources/outlets/``.

An outlet file says where its feeds are (one URL per locale), which disclaimer family applies,
and how it marks originals and translations — the declared-identity signals dedupe trusts most:
an ``article_id_pattern`` whose one group extracts the id its per-locale URLs share (Gate serves
``/pt/news/detail/ID`` and ``/ja/news/detail/ID``), ``attribution_phrases`` per locale ("Publicado
originalmente em", "本文最初發表於") and the outlets it ``translates_from``.

Files are validated when loaded; a bad file raises ``CatalogueError`` naming it.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from core.errors import CatalogueError
from core.locales import LOCALES
from sources.disclaimers import policies

OUTLETS_DIR = Path(__file__).with_name("outlets")
OUTLET_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_KEYS = frozenset(
    {
        "id",
        "name",
        "homepage",
        "disclaimer_policy",
        "feeds",
        "attribution_phrases",
        "translates_from",
        "article_id_pattern",
        "notes",
    }
)
_REQUIRED = ("id", "name", "homepage", "disclaimer_policy", "feeds")


@dataclass(frozen=True)
class OutletSpec:
    """One outlet as declared in its catalogue file."""

    id: str
    name: str
    homepage: str
    disclaimer_policy: str
    feeds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """locale → feed URL."""
    attribution_phrases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """locale → phrases that mark a copy as a translation of another article."""
    translates_from: tuple[str, ...] = ()
    article_id_pattern: re.Pattern[str] | None = None
    notes: str = ""

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def hosts(self) -> frozenset[str]:
        """Hosts of the homepage and feeds, without ``www.``: how a bare feed URL finds its outlet."""
        urls = [self.homepage, *self.feeds.values()]
        return frozenset(_bare_host(u) for u in urls if _bare_host(u))

    def article_key(self, url: str) -> str | None:
        """``"outlet:id"`` when the URL carries the outlet's shared article id."""
        if self.article_id_pattern is None:
            return None
        match = self.article_id_pattern.search(url)
        return f"{self.id}:{match.group(1)}" if match and match.group(1) else None


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL we would poll, or None when it is fine."""
    if not url or any(c.isspace() for c in url):
        return f"not a URL: {url!r}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return f"not a URL: {url!r}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"only http(s) URLs are allowed: {url!r}"
    if not parts.hostname:
        return f"URL has no host: {url!r}"
    return None


def _bare_host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def load_catalogue(directory: Path | None = None) -> dict[str, OutletSpec]:
    """Every outlet, by id. Files are read once per directory and cached."""
    return {spec.id: spec for spec in _load(directory or OUTLETS_DIR)}


@dataclass(frozen=True)
class ArticleKeys:
    """The catalogue's article-key rule: called as ``rule(outlet_id, url)``.

    Stored dedupe features hold the article keys these patterns found, so ``describe()`` names the
    patterns (outlet id → pattern) for the features cache key (``codec.config_digest``): after an
    ``article_id_pattern`` is edited, stored features no longer match and are extracted again,
    instead of keeping keys the old pattern found."""

    directory: Path | None = None

    def __call__(self, outlet_id: str, url: str) -> str | None:
        """The cross-locale article key of ``url`` (``"gate:41872"``), or None when it has none."""
        spec = load_catalogue(self.directory).get(outlet_id)
        return spec.article_key(url) if spec else None

    def describe(self) -> dict[str, str]:
        """Outlet id → the ``article_id_pattern`` it declares (outlets without one are left out)."""
        catalogue = load_catalogue(self.directory)
        return {k: s.article_id_pattern.pattern for k, s in sorted(catalogue.items()) if s.article_id_pattern}


article_key = ArticleKeys()
"""The article-key rule of the installed catalogue (``sources/outlets``)."""


def outlet_names(directory: Path | None = None) -> dict[str, str]:
    """Name, first word of the name, and id of every outlet → outlet id: how attribution lines
    name outlets (dedupe reads them). CatalogueError when a file is broken: never an empty map."""
    out: dict[str, str] = {}
    for spec in load_catalogue(directory).values():
        out[spec.id] = spec.id
        out[spec.name] = spec.id
        out[spec.name.split()[0]] = spec.id
    return out


def outlet_for_url(url: str) -> str | None:
    """The catalogue outlet whose homepage or feeds live on the host of ``url``."""
    host = _bare_host(url)
    for spec in load_catalogue().values():
        if host in spec.hosts:
            return spec.id
    return None


@functools.cache
def _load(directory: Path) -> tuple[OutletSpec, ...]:
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise CatalogueError(f"{directory}: no outlet files")
    known_policies = policies()
    specs = tuple(_read(path, known_policies) for path in files)
    ids = {spec.id for spec in specs}
    for spec in specs:
        for other in spec.translates_from:
            if other not in ids:
                raise CatalogueError(f"{spec.id}.toml: translates_from names unknown outlet {other!r}")
    return specs


def _read(path: Path, known_policies: frozenset[str]) -> OutletSpec:
    def fail(problem: str) -> CatalogueError:
        return CatalogueError(f"{path.name}: {problem}")

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise fail(f"cannot read: {exc}") from exc
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise fail(f"unknown keys {', '.join(unknown)}")
    for key in _REQUIRED:
        if key not in raw:
            raise fail(f"missing {key!r}")

    outlet_id = _text(raw, "id", fail)
    if not OUTLET_ID.fullmatch(outlet_id) or outlet_id != path.stem:
        raise fail(f"id {outlet_id!r} must be a slug equal to the file name")
    homepage = _text(raw, "homepage", fail)
    if problem := http_url_problem(homepage):
        raise fail(f"homepage: {problem}")
    policy = _text(raw, "disclaimer_policy", fail)
    if policy not in known_policies:
        raise fail(f"unknown disclaimer_policy {policy!r} (known: {', '.join(sorted(known_policies))})")

    feeds: dict[str, str] = {}
    for locale, url in _table(raw, "feeds", fail).items():
        _check_locale(locale, "feeds", fail)
        if not isinstance(url, str):
            raise fail(f"[feeds] {locale} must be a URL string")
        if problem := http_url_problem(url):
            raise fail(f"[feeds] {locale}: {problem}")
        feeds[locale] = url

    phrases: dict[str, tuple[str, ...]] = {}
    for locale, values in _table(raw, "attribution_phrases", fail).items():
        _check_locale(locale, "attribution_phrases", fail)
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise fail(f"[attribution_phrases] {locale} must be a list of non-empty strings")
        phrases[locale] = tuple(values)

    translates_from = raw.get("translates_from", [])
    if not isinstance(translates_from, list) or not all(isinstance(v, str) for v in translates_from):
        raise fail("translates_from must be a list of outlet ids")

    pattern: re.Pattern[str] | None = None
    if "article_id_pattern" in raw:
        source = _text(raw, "article_id_pattern", fail)
        try:
            pattern = re.compile(source)
        except re.error as exc:
            raise fail(f"article_id_pattern does not compile: {exc}") from exc
        if pattern.groups != 1:
            raise fail(f"article_id_pattern must have exactly one group, has {pattern.groups}")

    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise fail("notes must be a string")
    return OutletSpec(
        id=outlet_id,
        name=_text(raw, "name", fail),
        homepage=homepage,
        disclaimer_policy=policy,
        feeds=MappingProxyType(feeds),
        attribution_phrases=MappingProxyType(phrases),
        translates_from=tuple(translates_from),
        article_id_pattern=pattern,
        notes=notes,
    )


def _text(raw: dict[str, Any], key: str, fail: Callable[[str], CatalogueError]) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key!r} must be a non-empty string")
    return value.strip()


def _table(raw: dict[str, Any], key: str, fail: Callable[[str], CatalogueError]) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise fail(f"[{key}] must be a table keyed by locale")
    return value


def _check_locale(locale: str, table: str, fail: Callable[[str], CatalogueError]) -> None:
    if locale not in LOCALES:
        raise fail(f"[{table}] unknown locale {locale!r} (known: {' '.join(LOCALES)})")

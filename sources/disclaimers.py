"""Disclaimer texts per (policy, locale), read from ``sources/disclaimers.toml``.

The file is the seed: the API versions texts in the ``disclaimer`` table, and editors change them
there. Validation is strict so a missing translation fails at start rather than serving an
English text to an Arabic reader.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from core.errors import CatalogueError
from core.locales import LOCALES, REGISTRY

DISCLAIMERS_PATH = Path(__file__).with_name("disclaimers.toml")
NO_DISCLAIMER = "none"
"""The policy whose text is empty in every locale."""


def load_disclaimers(path: Path | None = None) -> dict[tuple[str, str], str]:
    """Every (policy, locale) text; ``none`` maps to "" in all thirteen locales."""
    path = path or DISCLAIMERS_PATH
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path.name}: cannot read disclaimers: {exc}") from exc
    for required in ("third-party", NO_DISCLAIMER):
        if required not in raw:
            raise CatalogueError(f"{path.name}: missing [{required}] table")
    texts: dict[tuple[str, str], str] = {}
    for policy, table in raw.items():
        if not isinstance(table, dict):
            raise CatalogueError(f"{path.name}: [{policy}] must be a table of locale = text")
        for locale, text in table.items():
            if locale not in LOCALES:
                raise CatalogueError(f"{path.name}: [{policy}] unknown locale {locale!r}")
            if not isinstance(text, str):
                raise CatalogueError(f"{path.name}: [{policy}] {locale} must be a string")
            if policy == NO_DISCLAIMER and text.strip():
                raise CatalogueError(f"{path.name}: [{policy}] {locale} must be empty")
        for loc in REGISTRY:
            # A locale's ``disclaimer`` names the row it reads (its own code, or another locale's
            # until a translation is written).
            text = str(table.get(loc.disclaimer, "")).strip()
            if policy != NO_DISCLAIMER and not text:
                raise CatalogueError(f"{path.name}: [{policy}] has no text for {loc.disclaimer}")
            texts[(policy, loc.code)] = text
    return texts


def policies(path: Path | None = None) -> frozenset[str]:
    """The policy names an outlet may declare."""
    return frozenset(policy for policy, _ in load_disclaimers(path))

"""The locale registry: everything babelwire knows about a locale, read from ``core/locale_data``.

Every module that needs a locale fact reads it here: the feed and CLI validation (``LOCALES``,
:meth:`Registry.parse`), language detection (script, function words, detector language), dedupe
(number formats, magnitude words, words that are never names), the API (fallback chain with
its OpenCC conversions, Accept-Language subtags, the disclaimer key).

The data, in ``core/locale_data/`` (or the folder named by ``BABELWIRE_LOCALE_DATA``):

- ``locales.txt``: the codes, one a line, in the order a Gate news page offers them.
- ``<code>.toml``, one per code:

  ============== =====================================================================
  name           the locale's own name
  script         ``latin``, ``cjk``, ``cyrillic`` or ``arabic``: the writing system
  language       ISO 639-1 language (``pt`` for pt-PT and pt-BR); names the word lists
                 ``words/<language>.function.txt`` and ``words/<language>.stopwords.txt``
                 (both optional)
  detector       optional: the lingua ``Language`` name whose detections map to this
                 locale (one locale per language: pt-BR for Portuguese)
  decimal        the decimal mark, ``.`` or ``,``; ``group`` the other mark, which groups
  space_groups   whether a plain space groups thousands (``2 048``)
  number_words   the magnitude-word table ``numbers/<number_words>.tsv`` (``cjk``:
                 ``numbers/cjk.units.tsv``), with ``numbers/<number_words>.abbrev.tsv``
  fallback       what a reader is served when no member is in this locale, in order:
                 ``"pt-BR"``, ``"zh-CN:s2twp"`` (converted with that OpenCC config),
                 ``"!ru"`` (never served); ``[]``: the original. Same syntax as
                 ``BABELWIRE_LOCALE_FALLBACKS``
  accept_subtags optional: Accept-Language subtags that pick this locale among those of
                 its language (``zh-Hant`` → zh-TW); ``language_default = false`` when
                 a bare language tag should not pick it
  attribution    regexes of the phrases that name a text's original ("Originally published
                 on", "原文"); ``attribution_stems``: plain stems, one of which every phrase holds
  disclaimer     the key of this locale's texts in ``sources/disclaimers.toml``
  ============== =====================================================================

Adding a locale is one line in ``locales.txt`` plus its ``.toml`` (and, for a new language, its
word lists and magnitude words); ``tests/test_locales.py`` proves it by adding one.
This module imports nothing else of the project.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError

DATA_DIR = Path(__file__).with_name("locale_data")
SCRIPTS = frozenset({"latin", "cjk", "cyrillic", "arabic"})
LATIN_END = r"(?![A-Za-zÀ-ɏḀ-ỿ])"
"""``{latin_end}`` in a magnitude-word pattern: the word ends (no Latin letter follows)."""
CYRILLIC_TAIL = r"[а-яёіїєґ]*"
"""``{cyr_tail}`` in a magnitude-word pattern: any Cyrillic case ending."""


class LocaleDataError(ConfigError):
    """The locale data is incomplete or malformed (one line, names the file)."""


@dataclass(frozen=True)
class Locale:
    """One locale and everything the pipeline, dedupe and the API need to know of it."""

    code: str
    name: str
    script: str
    language: str
    detector: str | None
    decimal: str
    group: str
    space_groups: bool
    number_words: str
    fallback: tuple[str, ...]
    """Steps in ``BABELWIRE_LOCALE_FALLBACKS`` syntax: ``locale``, ``locale:opencc``, ``!locale``."""
    accept_subtags: frozenset[str]
    language_default: bool
    attribution: tuple[str, ...]
    """Regexes (case-insensitive) of the phrases that attribute a text to its original."""
    attribution_stems: tuple[str, ...]
    disclaimer: str
    function_words: frozenset[str]
    stopwords: frozenset[str]

    @property
    def comma_decimal(self) -> bool:
        return self.decimal == ","


@dataclass(frozen=True)
class Registry:
    """The locales in their order, and the per-language tables they point to."""

    locales: tuple[Locale, ...]
    scale_words: Mapping[str, tuple[tuple[str, float], ...]]
    """number_words → (regex, multiplier), longest first; multiplier 0: see ``abbreviations``."""
    abbreviations: Mapping[str, Mapping[str, float]]
    cjk_units: tuple[tuple[str, float], ...]
    directory: Path

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(loc.code for loc in self.locales)

    def __iter__(self) -> Iterator[Locale]:
        return iter(self.locales)

    def __contains__(self, code: object) -> bool:
        return any(loc.code == code for loc in self.locales)

    def get(self, code: str) -> Locale | None:
        return next((loc for loc in self.locales if loc.code == code), None)

    def parse(self, value: str) -> str | None:
        """A code matched case-insensitively, ``_`` for ``-`` (``pt_pt`` → ``pt-PT``); else None."""
        folded = value.strip().lower().replace("_", "-")
        return next((loc.code for loc in self.locales if loc.code.lower() == folded), None)

    def of_language(self, language: str) -> tuple[Locale, ...]:
        return tuple(loc for loc in self.locales if loc.language == language)

    def function_words(self) -> dict[str, frozenset[str]]:
        """language → its function words, for the languages that have a list (registry order)."""
        out: dict[str, frozenset[str]] = {}
        for loc in self.locales:
            if loc.function_words and loc.language not in out:
                out[loc.language] = loc.function_words
        return out

    def stopwords(self) -> frozenset[str]:
        """Every language's words that are never names, in one set."""
        return frozenset().union(*(loc.stopwords for loc in self.locales))

    def detected_locale(self, language: str) -> str | None:
        """The locale a detection of ``language`` (ISO 639-1) maps to: the one with a detector."""
        return next((loc.code for loc in self.of_language(language) if loc.detector), None)


def _words(path: Path) -> frozenset[str]:
    if not path.exists():
        return frozenset()
    return frozenset(_rows(path))


def _rows(path: Path) -> Iterator[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocaleDataError(f"{path}: cannot read: {exc}") from exc
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            yield line.rstrip("\n")


def _table(path: Path) -> tuple[tuple[str, float], ...]:
    out = []
    for row in _rows(path):
        form, sep, value = row.rpartition("\t")
        try:
            out.append((form, float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise LocaleDataError(f"{path}: {row!r} is not FORM<TAB>NUMBER")
    return tuple(out)


def _str(raw: Mapping[str, object], key: str, path: Path, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise LocaleDataError(f"{path.name}: {key!r} must be a non-empty string")
    return value


def _strings(raw: Mapping[str, object], key: str, path: Path) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LocaleDataError(f"{path.name}: {key!r} must be a list of strings")
    return tuple(value)


def _locale(code: str, directory: Path) -> Locale:
    path = directory / f"{code}.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LocaleDataError(f"{path}: cannot read locale {code}: {exc}") from exc
    script = _str(raw, "script", path)
    if script not in SCRIPTS:
        raise LocaleDataError(f"{path.name}: script {script!r} is not one of {' '.join(sorted(SCRIPTS))}")
    decimal = _str(raw, "decimal", path)
    if decimal not in (".", ","):
        raise LocaleDataError(f"{path.name}: decimal must be '.' or ','")
    language = _str(raw, "language", path)
    detector = raw.get("detector")
    if detector is not None and not isinstance(detector, str):
        raise LocaleDataError(f"{path.name}: 'detector' must be a string")
    return Locale(
        code=code,
        name=_str(raw, "name", path),
        script=script,
        language=language,
        detector=detector or None,
        decimal=decimal,
        group=_str(raw, "group", path, "," if decimal == "." else "."),
        space_groups=bool(raw.get("space_groups", False)),
        number_words=_str(raw, "number_words", path, language),
        fallback=_strings(raw, "fallback", path),
        accept_subtags=frozenset(s.lower() for s in _strings(raw, "accept_subtags", path)),
        language_default=bool(raw.get("language_default", True)),
        attribution=_strings(raw, "attribution", path),
        attribution_stems=_strings(raw, "attribution_stems", path),
        disclaimer=_str(raw, "disclaimer", path, code),
        function_words=_words(directory / "words" / f"{language}.function.txt"),
        stopwords=_words(directory / "words" / f"{language}.stopwords.txt"),
    )


def load(directory: Path = DATA_DIR) -> Registry:
    """The registry of the locale data in ``directory``; LocaleDataError (one line) when it is bad."""
    codes = tuple(_rows(directory / "locales.txt"))
    if not codes or len(set(codes)) != len(codes):
        raise LocaleDataError(f"{directory / 'locales.txt'}: needs distinct locale codes, one a line")
    locales = tuple(_locale(code, directory) for code in codes)
    for loc in locales:
        for step in loc.fallback:
            target = step.lstrip("!").partition(":")[0]
            if target not in codes:
                raise LocaleDataError(f"{loc.code}.toml: fallback step {step!r} names an unknown locale")
    numbers = directory / "numbers"
    scale: dict[str, tuple[tuple[str, float], ...]] = {}
    abbreviations: dict[str, dict[str, float]] = {}
    for name in sorted({loc.number_words for loc in locales} - {"cjk"}):
        if (numbers / f"{name}.tsv").exists():
            scale[name] = tuple(
                (form.replace("{latin_end}", LATIN_END).replace("{cyr_tail}", CYRILLIC_TAIL), value)
                for form, value in _table(numbers / f"{name}.tsv")
            )
        if (numbers / f"{name}.abbrev.tsv").exists():
            abbreviations[name] = dict(_table(numbers / f"{name}.abbrev.tsv"))
    units = numbers / "cjk.units.tsv"
    return Registry(
        locales=locales,
        scale_words=scale,
        abbreviations=abbreviations,
        cjk_units=_table(units) if units.exists() else (),
        directory=directory,
    )


def _load_at_start() -> Registry:
    """The registry of this process; bad locale data stops the program in one line (exit 2),
    before any command runs, since every module reads the registry when it is imported."""
    try:
        return load(Path(os.environ.get("BABELWIRE_LOCALE_DATA") or DATA_DIR))
    except LocaleDataError as exc:
        sys.stderr.write(f"error: BABELWIRE_LOCALE_DATA: {exc}\n")
        raise SystemExit(2) from None


REGISTRY = _load_at_start()
"""The registry every module reads; ``BABELWIRE_LOCALE_DATA`` names another data folder."""
LOCALES: tuple[str, ...] = REGISTRY.codes
"""The locale codes in their order (the thirteen of ``core/locale_data/locales.txt``)."""

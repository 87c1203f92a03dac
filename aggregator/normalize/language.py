"""Language detection: the declared locale unless the text clearly says otherwise.

The locales, their scripts, function words and detector languages come from the locale
registry (``core.locales``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from core.locales import REGISTRY

MIN_DETECT_CHARS = 40

_SCRIPT_PATTERNS = {
    "han": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "kana": re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "arabic": re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]"),
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]"),
}
_UKRAINIAN_LETTERS = re.compile(r"[іїєґІЇЄҐ]")
_RUSSIAN_LETTERS = re.compile(r"[ыэъёЫЭЪЁ]")
_VIETNAMESE_LETTERS = re.compile(r"[ăđơưĂĐƠƯ\u1ea0-\u1ef9]")
_WORD = re.compile(r"[^\W\d_]+")
_LOCALE_SCRIPTS = {loc.language: loc.script for loc in REGISTRY}
"""language (``pt`` of pt-PT) → its writing system."""
_LATIN_LOCALES = frozenset(lang for lang, script in _LOCALE_SCRIPTS.items() if script == "latin")
_STOPWORDS = REGISTRY.function_words()
"""language → its function words (``core/locale_data/words/*.function.txt``)."""
_LINGUA_CONFIDENCE = 0.7
_SAMPLE_CHARS = 600


def detect_language(text: str, declared: str) -> str | None:
    """The locale of ``text``: ``declared`` unless the text clearly is in another language.

    Cheap first: the writing system (Han/kana/Cyrillic/Arabic/Latin, see
    :func:`_dominant_script`) settles most cases, with
    letter tells for Ukrainian vs Russian and Vietnamese. Latin text whose function words fit
    the declared language keeps it without a model; otherwise lingua (restricted to our
    languages, low-accuracy mode, built once on first use) must be at least 70 % sure.
    Short text (< 40 characters) always keeps the declared locale.
    """
    declared = declared or ""
    sample = text[:_SAMPLE_CHARS]
    if len(sample.strip()) < MIN_DETECT_CHARS:
        return declared or None
    if sample.isascii():  # only the Latin letters can be there
        counts = dict.fromkeys(_SCRIPT_PATTERNS, 0)
        counts["latin"] = len(_SCRIPT_PATTERNS["latin"].findall(sample))
    else:
        counts = {name: len(pattern.findall(sample)) for name, pattern in _SCRIPT_PATTERNS.items()}
    script = _dominant_script(counts, _LOCALE_SCRIPTS.get(declared.split("-", 1)[0]))
    if script is None:
        return declared or None
    base = declared.split("-", 1)[0]
    if script == "cjk":
        if counts["kana"] >= 3 or (base == "ja" and counts["kana"]):
            return "ja"
        if declared in ("zh-CN", "zh-TW"):
            return declared
        return "zh-TW" if _is_traditional(sample) else "zh-CN"
    if script == "arabic":
        return "ar"
    if script == "cyrillic":
        return _cyrillic_locale(sample, declared)
    return _latin_locale(sample, declared)


def _dominant_script(counts: dict[str, int], declared_script: str | None) -> str | None:
    """The writing system of the sample, or None when too few letters or too mixed to say.

    Latin is every locale's loanword script (names, tickers, quoted tweets), so a non-Latin
    script holding a quarter of the letters wins over it; a CJK character counts double.
    """
    weighted = {
        "cjk": 2 * (counts["han"] + counts["kana"]),
        "cyrillic": counts["cyrillic"],
        "arabic": counts["arabic"],
        "latin": counts["latin"],
    }
    total = sum(weighted.values())
    if total < 20:
        return None
    if declared_script and declared_script != "latin" and weighted[declared_script] * 4 >= total:
        return declared_script
    other = max(("cjk", "cyrillic", "arabic"), key=weighted.__getitem__)
    if weighted[other] * 4 >= total:
        return other
    return "latin" if weighted["latin"] * 10 >= total * 6 else None


def _cyrillic_locale(sample: str, declared: str) -> str:
    ukrainian = len(_UKRAINIAN_LETTERS.findall(sample))
    russian = len(_RUSSIAN_LETTERS.findall(sample))
    if ukrainian > russian:
        return "uk"
    if russian > ukrainian:
        return "ru"
    return declared if declared in ("ru", "uk") else "ru"


def _latin_locale(sample: str, declared: str) -> str | None:
    base = declared.split("-", 1)[0]
    if len(_VIETNAMESE_LETTERS.findall(sample)) >= 8:
        return "vi"
    words = _WORD.findall(sample.lower())
    scores = {lang: sum(1 for word in words if word in stop) for lang, stop in _STOPWORDS.items()}
    if base in _LATIN_LOCALES and scores.get(base) and scores[base] >= max(scores.values()):
        return declared
    detected = _lingua_locale(sample)
    if detected is None and base not in _LATIN_LOCALES:
        # Latin text under a non-Latin locale: the script already says the locale is wrong.
        best = max(scores, key=scores.__getitem__)
        detected = (REGISTRY.detected_locale(best) or best) if scores[best] >= 3 else None
    if detected is None or detected.split("-", 1)[0] == base:
        return declared or detected
    return detected


@functools.cache
def _lingua() -> tuple[Any, dict[Any, str]]:
    """Build the lingua detector on first use: restricted to the registry's detector languages,
    low-accuracy mode."""
    from lingua import Language, LanguageDetectorBuilder

    locales = {getattr(Language, loc.detector): loc.code for loc in REGISTRY if loc.detector}
    detector = LanguageDetectorBuilder.from_languages(*locales).with_low_accuracy_mode().build()
    return detector, locales


def _lingua_locale(sample: str) -> str | None:
    detector, locales = _lingua()
    values = detector.compute_language_confidence_values(sample)
    if not values or values[0].value < _LINGUA_CONFIDENCE:
        return None
    return locales.get(values[0].language)


@functools.cache
def _t2s() -> Callable[[str], str]:
    import opencc

    converter = opencc.OpenCC("t2s")
    return converter.convert


def _is_traditional(sample: str) -> bool:
    """Chinese written in traditional characters: enough of them change under OpenCC t2s."""
    han = "".join(_SCRIPT_PATTERNS["han"].findall(sample))
    simplified = _t2s()(han)
    changed = sum(1 for a, b in zip(han, simplified, strict=False) if a != b)
    return changed >= 2 and changed * 20 >= len(han)

"""Numbers as language-agnostic anchors: every locale's way of writing a figure → one float.

``1,5 mil milhões`` (pt-PT), ``1,5 bilhão`` (pt-BR), ``15 亿`` (zh), ``15億`` (ja), ``1.5 billion`` (en),
``1,5 млрд`` (ru/uk), ``1,5 Md`` (fr), ``1,5 tỷ`` (vi), ``1,5 miliar`` / ``1,5 M`` (id),
``١٫٥ مليار`` (ar) all read as 1.5e9; CJK compounds such as ``9万8000`` and ``7億4240万`` are summed.

Rules, in order:
- every Unicode decimal digit becomes ASCII; the Arabic decimal and group marks become ``.``/``,``;
- a figure's separators are read with its locale: when both ``.`` and ``,`` occur the last one is the
  decimal mark; a mark that repeats groups; a single mark followed by exactly three digits groups in
  the locale's convention (``84.500`` is 84500 in pt, ``84,500`` is 84500 in en) and is a decimal
  mark otherwise; NBSP, narrow NBSP and thin spaces group everywhere, a plain space only in locales
  that group with spaces;
- a magnitude word or abbreviation right after the figure multiplies it, with the locale's table
  (``M`` is a million in es/fr/en but a *miliar*, 10⁹, in id; ``T`` is *tỷ* in vi, a trillion in en);
- every figure gets a rarity weight: years, small counts and day numbers say little, amounts a lot.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

from core.locales import REGISTRY

_DIGIT_BLOCKS = (0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0E50, 0xFF10)
_DIGITS: dict[int, str] = {block + d: str(d) for block in _DIGIT_BLOCKS for d in range(10)}
_DIGITS.update({0x066B: ".", 0x066C: ",", 0x2212: "-"})
_FOREIGN_DIGIT = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_DIGITS)) + "]")

COMMA_DECIMAL = frozenset(loc.code for loc in REGISTRY if loc.comma_decimal)
"""Locales whose decimal mark is a comma (their group mark is ``.`` or a space)."""
SPACE_GROUPS = frozenset(loc.code for loc in REGISTRY if loc.space_groups)
"""Locales where a plain space may group thousands (``2 048``)."""

# (regex alternative, multiplier) per language family, longest alternatives first; multiplier 0:
# an abbreviation, valued by _ABBREV. The tables are core/locale_data/numbers/*.tsv.
_WORDS: dict[str, tuple[tuple[str, float], ...]] = dict(REGISTRY.scale_words)
_ABBREV: dict[str, dict[str, float]] = {fam: dict(table) for fam, table in REGISTRY.abbreviations.items()}
_CJK_UNITS: tuple[tuple[str, float], ...] = REGISTRY.cjk_units
_FAMILY = {loc.code: loc.number_words for loc in REGISTRY}


def family(locale: str) -> str:
    """The language family that shares one magnitude-word table (``pt-PT``/``pt-BR`` → ``pt``)."""
    known = _FAMILY.get(locale)
    if known is not None:
        return known
    base = locale.split("-")[0].lower()
    return "cjk" if base in ("zh", "ja") else base


def _compile(fam: str) -> re.Pattern[str] | None:
    words = _WORDS.get(fam)
    if not words:
        return None
    return re.compile(r"[\s\u00a0\u202f]*(" + "|".join(f"(?:{w})" for w, _ in words) + ")")


_WORD_RES = {fam: _compile(fam) for fam in _WORDS}
_CJK_RE = re.compile("[ \u00a0]?(" + "|".join(u for u, _ in _CJK_UNITS) + ")")
_CJK_VALUE = dict(_CJK_UNITS)
_GROUPED = r"\d{1,3}(?:[,.\u00a0\u202f\u2009]\d{3})+(?:[.,]\d+)?"
_SPACED = r"\d{1,3}(?:[ \u00a0\u202f\u2009]\d{3})+(?:,\d+)?"
_PLAIN = r"\d+(?:[.,]\d+)?"
_NUM_RE = re.compile(rf"(?<![0-9A-Za-z.,])(?:{_GROUPED}|{_PLAIN})")
_NUM_SPACED_RE = re.compile(rf"(?<![0-9A-Za-z.,])(?:{_SPACED}|{_GROUPED}|{_PLAIN})")


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure found in a text: its value, rarity weight and character offset."""

    value: float
    weight: float
    pos: int


def ascii_digits(text: str) -> str:
    """Every decimal digit as ASCII, Arabic decimal/group marks as ``.``/``,``."""
    if text.isascii() or not _FOREIGN_DIGIT.search(text):
        return text
    return text.translate(_DIGITS)


def read_figure(raw: str, locale: str) -> float | None:
    """The value of one digit string with separators, read with ``locale``'s conventions."""
    s = raw.replace("\u00a0", " ").replace("\u202f", " ").replace("\u2009", " ")
    if " " in s:
        s = s.replace(" ", "")
    has_dot, has_comma = "." in s, "," in s
    try:
        if has_dot and has_comma:
            dec = "." if s.rfind(".") > s.rfind(",") else ","
            grp = "," if dec == "." else "."
            return float(s.replace(grp, "").replace(dec, "."))
        if not has_dot and not has_comma:
            return float(s)
        mark = "." if has_dot else ","
        if s.count(mark) > 1:
            return float(s.replace(mark, ""))
        after = len(s) - s.index(mark) - 1
        groups = (mark == ".") == (locale in COMMA_DECIMAL)
        if after == 3 and groups:
            return float(s.replace(mark, ""))
        return float(s.replace(mark, "."))
    except ValueError:
        return None


def weight_of(value: float, scaled: bool, raw: str) -> float:
    """How much a shared figure says: amounts and prices a lot, years and small counts little."""
    if scaled or (value >= 1000 and not (1990 <= value <= 2035 and value.is_integer())):
        return 1.0
    if value.is_integer():
        if 1990 <= value <= 2035:
            return 0.2
        if value <= 12:
            return 0.15
        if value <= 31:
            return 0.3
        if value <= 100:
            return 0.5
        return 0.8
    return 0.7 if value < 10 else 0.9


def extract_figures(text: str, locale: str) -> list[Figure]:
    """All figures in ``text`` in order, magnitude words applied (``12亿`` → 1.2e9)."""
    text = ascii_digits(text)
    fam = family(locale)
    word_re = _WORD_RES.get(fam)
    abbrev = _ABBREV.get(fam, {})
    words = _WORDS.get(fam, ())
    num_re = _NUM_SPACED_RE if locale in SPACE_GROUPS else _NUM_RE
    out: list[Figure] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = num_re.search(text, pos)
        if m is None:
            break
        raw = m.group(0)
        value = read_figure(raw, locale)
        end = m.end()
        if value is None:
            pos = end
            continue
        scaled = False
        cm = _CJK_RE.match(text, end)
        if cm is not None:
            unit = _CJK_VALUE[cm.group(1)]
            value *= unit
            scaled = True
            end = cm.end()
            # Compounds: 9万8000, 7億4240万, 1兆2000億 — smaller parts follow without a break.
            while True:
                nm = _NUM_RE.match(text, end)
                if nm is None:
                    break
                part = read_figure(nm.group(0), locale)
                if part is None:
                    break
                um = _CJK_RE.match(text, nm.end())
                sub_unit = _CJK_VALUE[um.group(1)] if um else 1.0
                if part * sub_unit >= unit:
                    break
                value += part * sub_unit
                unit = sub_unit
                end = um.end() if um else nm.end()
                if um is None:
                    break
        elif word_re is not None:
            wm = word_re.match(text, end)
            if wm is not None:
                token = wm.group(1)
                mult = _multiplier(token, words, abbrev)
                # Glued lower-case one-letter abbreviations only count when attached ("$5m").
                if mult and not (token in ("m", "b") and wm.start(1) != end):
                    value *= mult
                    scaled = True
                    end = wm.end()
        out.append(Figure(value, weight_of(value, scaled, raw), m.start()))
        pos = end
    return out


def _multiplier(token: str, words: tuple[tuple[str, float], ...], abbrev: dict[str, float]) -> float:
    if token in abbrev:
        return abbrev[token]
    for pattern, mult in words:
        if mult and _compiled(pattern).fullmatch(token):
            return mult
    return 0.0


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def close(a: float, b: float, tolerance: float) -> bool:
    """Same figure up to a translator's rounding."""
    if a == b:
        return True
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _bucket(value: float) -> tuple[int, int]:
    if value <= 0 or not math.isfinite(value):  # a 400-digit "number" is inf as a float
        return 0, 0
    exp = math.floor(math.log10(value))
    mant = round(value / 10 ** (exp - 1))
    if mant >= 100:
        mant, exp = 10, exp + 1
    return mant, exp


def buckets_near(value: float, tolerance: float) -> list[str]:
    """Blocking keys (two significant digits, ``12e8``) of every bucket a figure within
    ``tolerance`` of ``value`` may fall into; a figure is indexed under its own bucket,
    ``buckets_near(value, 0)``."""
    mant, exp = _bucket(value * (1 - tolerance))
    last = _bucket(value * (1 + tolerance))
    out = [f"{mant}e{exp}"]
    while (exp, mant) < (last[1], last[0]) and len(out) < 64:
        mant += 1
        if mant >= 100:
            mant, exp = 10, exp + 1
        out.append(f"{mant}e{exp}")
    return out

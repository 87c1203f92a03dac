"""The curated multilingual entity lexicon (``sources/lexicon.tsv``): surface forms → one entity id.

贝莱德, 貝萊德, ブラックロック, Блэкрок, بلاك روك and BlackRock are one entity; a shared entity is an anchor
that survives translation. Matching rules per script:
- Latin forms match whole words, case-insensitively unless the form starts with ``=`` (``=SEC``,
  ``=Circle``: common words in some language), multi-word forms token by token;
- Cyrillic forms are stems: ``Трамп`` also matches ``Трампа``, ``Трампом`` (up to three more letters);
- Arabic forms also match with a clitic prefix (و ب ل ف ك) and with or without the article ال;
- Han and kana forms match as substrings, after zh-Hant has been folded to zh-Hans (both in the
  lexicon and in the text), so 比特幣 and 比特币 are the same form.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import opencc

LEXICON_PATH = Path(__file__).resolve().parents[2] / "sources" / "lexicon.tsv"

LATIN_LETTER = "A-Za-zÀ-ɏḀ-ỿ"
_CYRILLIC = "А-Яа-яЁёІіЇїЄєҐґ"
_ARABIC = "\u0621-\u064a\u0671-\u06d3"
_HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
_CLITICS = "وبلفك"
_ALEF = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا"})


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def fold_chinese(text: str) -> str:
    """zh-Hant → zh-Hans (OpenCC), so Taiwanese and mainland texts share one spelling."""
    return str(_t2s().convert(text))


def script_of(form: str) -> str:
    if _HAN_KANA.search(form):
        return "cjk"
    if re.search(f"[{_ARABIC}]", form):
        return "ar"
    if re.search(f"[{_CYRILLIC}]", form):
        return "cyr"
    return "latin"


def normalize_arabic(word: str) -> str:
    return word.translate(_ALEF)


def arabic_variants(word: str) -> list[str]:
    """The word as written, without a clitic prefix, and without the article ال."""
    norm = normalize_arabic(word)
    out = [norm]
    if len(norm) > 3 and norm[0] in _CLITICS:
        out.append(norm[1:])
    for cand in list(out):
        if cand.startswith("ال") and len(cand) > 4:
            out.append(cand[2:])
    return out


@dataclass(frozen=True)
class Entity:
    id: str
    kind: str
    weight: float


class Lexicon:
    """Surface-form lookups built once from the TSV file."""

    def __init__(self, rows: list[tuple[str, str, float, list[str]]]) -> None:
        self.entities: dict[str, Entity] = {}
        self.latin_ci: dict[str, str] = {}
        self.latin_cs: dict[str, str] = {}
        self.cyrillic: dict[str, str] = {}
        self.arabic: dict[str, str] = {}
        self.first_words: dict[str, int] = {}
        """First word (lower-cased, normalized) of a multi-word form → the most words any such form has."""
        self.inner_words: set[str] = set()
        """Words inside multi-word Latin forms ("and" in "Securities and Exchange Commission")."""
        cjk: dict[str, str] = {}
        for ent_id, kind, weight, forms in rows:
            self.entities[ent_id] = Entity(ent_id, kind, weight)
            # A form marked case-sensitive anywhere in the row stays case-sensitive.
            sensitive_forms = {f.strip().lstrip("=").lower() for f in forms if f.strip().startswith("=")}
            for raw in forms:
                form = raw.strip()
                if not form:
                    continue
                sensitive = form.startswith("=")
                form = form.lstrip("=")
                if script_of(form) == "latin":
                    form = form.rstrip(".")
                script = script_of(form)
                words = form.split()
                if len(words) > 1 and script == "latin":
                    self.inner_words.update(w.lower() for w in words[1:])
                if len(words) > 1 and script != "cjk":
                    first = normalize_arabic(words[0]) if script == "ar" else words[0].lower()
                    self.first_words[first] = max(self.first_words.get(first, 1), len(words))
                if script == "cjk":
                    cjk.setdefault(fold_chinese(form), ent_id)
                    cjk.setdefault(form, ent_id)
                elif script == "ar":
                    norm = normalize_arabic(form)
                    self.arabic.setdefault(norm, ent_id)
                    if norm.startswith("ال"):
                        self.arabic.setdefault(norm[2:], ent_id)
                elif script == "cyr":
                    self.cyrillic.setdefault(form.lower(), ent_id)
                elif sensitive:
                    self.latin_cs.setdefault(form, ent_id)
                elif form.lower() in sensitive_forms:
                    continue
                else:
                    self.latin_ci.setdefault(form.lower(), ent_id)
        forms_sorted = sorted(cjk, key=lambda f: (-len(f), f))
        self.cjk_forms = cjk
        self.cjk_re = re.compile("|".join(re.escape(f) for f in forms_sorted)) if forms_sorted else None

    @classmethod
    def load(cls, path: Path = LEXICON_PATH) -> Lexicon:
        rows: list[tuple[str, str, float, list[str]]] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 4:
                raise ValueError(f"{path}: bad lexicon line {line!r}")
            rows.append((parts[0].strip(), parts[1].strip(), float(parts[2]), parts[3].split("|")))
        return cls(rows)

    def weight(self, ent_id: str) -> float:
        ent = self.entities.get(ent_id)
        return ent.weight if ent else 0.0

    def latin(self, phrase: str) -> str | None:
        """The entity a Latin word or phrase names, if any."""
        hit = self.latin_cs.get(phrase)
        if hit is None:
            hit = self.latin_ci.get(phrase.lower())
        return hit

    def cyrillic_word(self, phrase: str) -> str | None:
        """Exact phrase first, then the stem of its last word (``Трампом`` → ``трамп``)."""
        low = phrase.lower()
        hit = self.cyrillic.get(low)
        if hit is not None:
            return hit
        for cut in range(1, 4):
            if len(low) - cut < 3:
                break
            hit = self.cyrillic.get(low[:-cut])
            if hit is not None:
                return hit
        return None

    def span(self, word: str, script: str) -> int:
        """How many words a form starting with ``word`` may have (1: no multi-word form does)."""
        if not self.first_words:
            return 1
        if script == "ar":
            return max((self.first_words.get(c, 1) for c in arabic_variants(word)), default=1)
        return self.first_words.get(word.lower(), 1)

    def arabic_word(self, phrase: str) -> str | None:
        """With and without a clitic prefix and the article ال."""
        for cand in arabic_variants(phrase):
            hit = self.arabic.get(cand)
            if hit is not None:
                return hit
        return None

    def find_cjk(self, text: str) -> Iterator[tuple[int, str]]:
        """(offset, entity id) of every Han/kana form in ``text`` (already folded to zh-Hans)."""
        if self.cjk_re is None:
            return
        for m in self.cjk_re.finditer(text):
            yield m.start(), self.cjk_forms[m.group(0)]


@cache
def default_lexicon() -> Lexicon:
    return Lexicon.load()

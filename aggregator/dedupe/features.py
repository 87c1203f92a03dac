"""From an item's plain fields to the anchors dedupe compares (pure, no I/O).

A ``DedupeDoc`` is what dedupe needs of a stored item; ``Extractor.features`` turns it into
``Features``: declared identity keys, the image, figures (``numbers``), entities (``lexicon`` plus
Latin-script names split on script changes, and tickers), the order those anchors come in, and a
MinHash of the text for same-language near-duplicates.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from aggregator.dedupe.blocking import Keys, blocking_keys
from aggregator.dedupe.kernels import minhash_kernel as _minhash_kernel
from aggregator.dedupe.lexicon import LATIN_LETTER, Lexicon, default_lexicon, fold_chinese
from aggregator.dedupe.numbers import Figure, extract_figures, family
from aggregator.dedupe.policy import DEFAULT, Thresholds
from aggregator.dedupe.pool import extract_in_processes
from aggregator.normalize.urls import identity_url
from core.locales import REGISTRY

FEATURES_VERSION = 4
"""Bump whenever extraction gives other ``Features`` for the same item and lexicon: stored
per-item features (``aggregator.dedupe.codec``) made by an older version are then re-extracted."""
_SCRIPTS = {loc.code: loc.script for loc in REGISTRY}
NON_LATIN_LOCALES = frozenset(code for code, script in _SCRIPTS.items() if script != "latin")
_ID_PATTERN = re.compile(r"/news/detail/(\d+)")
_LATIN_TOKEN = re.compile(
    rf"[{LATIN_LETTER}][{LATIN_LETTER}0-9]*(?:[-.'’&][{LATIN_LETTER}0-9]+)*\.?|\$[A-Z]{{2,10}}"
)
_CYR_TOKEN = re.compile(r"[А-Яа-яЁёІіЇїЄєҐґ][А-Яа-яЁёІіЇїЄєҐґ'’-]*")
_AR_TOKEN = re.compile("[\u0621-\u064a\u0671-\u06d3]+")
_OPENERS = frozenset('.!?。！？:;«»"“”—–-(')
_HAN_KANA_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]+")
_WORD = re.compile(r"\w+")

STOPWORDS = REGISTRY.stopwords()
"""Words that are never names in any language (``core/locale_data/words/*.stopwords.txt``)."""


MINHASH_SEED = 7


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's ``MinHash(num_perm, seed, scheme="affine32").permutations``,
    drawn the way it draws them (a numpy ``RandomState(seed)``; ``a`` odd, so a·h + b mod 2³² is a
    bijection). Made here because importing datasketch imports scipy (seconds, in every process
    that dedupes or extracts); ``tests/test_ingest_features.py`` checks both agree."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


@dataclass(frozen=True)
class DedupeDoc:
    """What dedupe needs to know of one stored item."""

    id: int
    locale: str
    outlet: str
    url: str
    title: str
    text: str
    """Plain text, title first (as ``Item.text``)."""
    published_at: datetime
    image: str | None = None
    guid: str | None = None
    links: Mapping[str, Any] = field(default_factory=dict)
    tickers: Sequence[str] = ()
    language: str | None = None


@dataclass(frozen=True)
class Features:
    """The anchors of one document."""

    doc: DedupeDoc
    ts: float
    identity: frozenset[str]
    """Keys that name this very article: its URL, guid, an outlet's cross-locale article id."""
    declared: frozenset[str]
    """URLs this document says it is a version of (attribution link, <source>, alternates)."""
    cites: frozenset[str]
    """URLs the body links to."""
    image: str | None
    figures: tuple[tuple[float, float], ...]
    """(value, weight), one per distinct value, in order of first appearance."""
    title_figures: tuple[float, ...]
    entities: Mapping[str, float]
    """entity key → weight: lexicon entities, tickers, acronyms — names that survive translation."""
    names: Mapping[str, float]
    """Title-case words of Latin-script text outside the lexicon: names, or translated words."""
    sequence: tuple[str, ...]
    """Anchor keys in order of first appearance (figures as ``#<value>``)."""
    seq_values: tuple[float | None, ...]
    """The figure value of each ``sequence`` entry (None for entities)."""
    seq_index: Mapping[str, int]
    """Entity key → its position in ``sequence``."""
    seq_figures: tuple[tuple[float, int], ...]
    """(figure value, position in ``sequence``), sorted by value."""
    outlets_named: frozenset[str]
    paragraphs: tuple[tuple[tuple[float, ...], frozenset[str]], ...]
    """(heavy figures, entity and name keys) of each line of the text that carries an anchor, in
    order: a translation keeps the paragraphs of its original, an independent report of the same
    facts groups and orders them its own way."""
    minhash: tuple[int, ...] | None
    near_family: str
    blocking: Keys | None = None
    """The keys the clusterer indexes this item under and looks up for it (``blocking.blocking_keys``),
    worked out once at extraction and stored with the features; None: worked out when needed."""
    # Derived once here, read by every pair comparison.
    figure_mass: float = field(init=False)
    entity_mass: float = field(init=False)
    name_mass: float = field(init=False)
    figures_sorted: tuple[tuple[float, float], ...] = field(init=False)
    figures_sorted_values: tuple[float, ...] = field(init=False)
    """The values of ``figures_sorted``, to bisect."""
    anchor_weights: Mapping[str, float] = field(init=False)
    """``entities`` and ``names`` in one lookup (an entity's weight wins)."""
    minhash_lanes: int = field(init=False)
    """The MinHash as one integer, 32 bits per value, so two signatures compare in a few operations."""
    figure_values: frozenset[float] = field(init=False)
    """The values of ``figures``, for the figures two items share."""
    paragraph_sizes: tuple[int, ...] = field(init=False)
    """Per paragraph: twice its figures plus its entity keys (the Dice denominator's share)."""
    paragraph_figures: tuple[tuple[float, int], ...] = field(init=False)
    """(figure value, paragraph index) of every paragraph's figures, sorted: the paragraphs of
    another item that hold a close figure are found by bisection, not by pairing paragraphs."""
    paragraph_entities: Mapping[str, tuple[int, ...]] = field(init=False)
    """Entity or name key → the indices of the paragraphs that carry it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "figure_mass", sum(w for _, w in self.figures))
        object.__setattr__(self, "entity_mass", sum(self.entities.values()))
        object.__setattr__(self, "name_mass", sum(self.names.values()))
        object.__setattr__(self, "figures_sorted", tuple(sorted(self.figures)))
        object.__setattr__(self, "figures_sorted_values", tuple(v for v, _ in self.figures_sorted))
        object.__setattr__(self, "anchor_weights", {**self.names, **self.entities})
        lanes = 0
        for h in reversed(self.minhash or ()):
            lanes = (lanes << 32) | h
        object.__setattr__(self, "minhash_lanes", lanes)
        object.__setattr__(self, "figure_values", frozenset(v for v, _ in self.figures))
        sizes: list[int] = []
        para_figures: list[tuple[float, int]] = []
        para_entities: dict[str, list[int]] = {}
        for i, (figs, ents) in enumerate(self.paragraphs):
            sizes.append(2 * len(figs) + len(ents))
            para_figures += [(v, i) for v in figs]
            for key in ents:
                para_entities.setdefault(key, []).append(i)
        object.__setattr__(self, "paragraph_sizes", tuple(sizes))
        object.__setattr__(self, "paragraph_figures", tuple(sorted(para_figures)))
        object.__setattr__(self, "paragraph_entities", {k: tuple(v) for k, v in para_entities.items()})


class Extractor:
    """Turns ``DedupeDoc``s into ``Features``; holds the lexicon and outlet names it needs."""

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        outlet_names: Mapping[str, str] | None = None,
        thresholds: Thresholds = DEFAULT,
        article_key: Any = None,
    ) -> None:
        self.lexicon = lexicon or default_lexicon()
        if outlet_names is None:
            from sources.catalogue import outlet_names as catalogue_outlet_names

            # A broken outlet file raises CatalogueError here: dedupe never runs without the names.
            outlet_names = catalogue_outlet_names()
        self.outlet_names = {k.lower().replace(" ", ""): v for k, v in outlet_names.items()}
        self.thresholds = thresholds
        self.article_key = article_key
        self._perm_a, self._perm_b = affine32_permutations(thresholds.minhash_perm, seed=MINHASH_SEED)
        self._latin_infos: dict[str, _LatinToken] = {}
        self._cyr_infos: dict[str, tuple[int, str | None]] = {}
        self._ar_infos: dict[str, tuple[int, str | None]] = {}
        self._urls: dict[str, str | None] = {}

    def features_many(
        self, docs: Iterable[DedupeDoc], workers: int = 1, chunk: int = 500
    ) -> Iterator[Features]:
        """``features`` of every doc, in order; with ``workers`` > 1 extracted in that many processes,
        ``chunk`` docs at a time, while the caller consumes the earlier ones (clustering is serial)."""
        if workers <= 1:
            return map(self.features, docs)
        return extract_in_processes(self, docs, workers, chunk)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_latin_infos"], state["_cyr_infos"], state["_ar_infos"], state["_urls"] = {}, {}, {}, {}
        return state

    def features(self, doc: DedupeDoc) -> Features:
        locale = _parse_locale(doc)
        text = doc.text or doc.title
        if locale.startswith("zh"):
            text = fold_chinese(text)
            title = fold_chinese(doc.title)
        else:
            title = doc.title
        anchors: list[tuple[int, str]] = []
        figures = extract_figures(text, locale)
        values = _distinct(figures, self.thresholds.figure_tolerance)
        for fig in figures:
            if fig.weight >= 0.5:
                anchors.append((fig.pos, f"#{fig.value:.6g}"))
        title_figures = tuple(f.value for f in extract_figures(title, locale) if f.weight >= 0.5)
        entities: dict[str, float] = {}
        names: dict[str, float] = {}
        outlets: set[str] = set()
        for pos, key, weight, strong in self._entities(text, locale):
            if key.startswith("@"):
                outlets.add(key[1:])
                continue
            target = entities if strong else names
            if weight > target.get(key, 0.0):
                target[key] = weight
            anchors.append((pos, key))
        for key in list(names):
            if key in entities:
                del names[key]
        for ticker in doc.tickers:
            key = self.lexicon.latin(ticker.upper()) or ticker.lower()
            entities.setdefault(key, self.lexicon.weight(key) or 0.7)
        anchors.sort()
        paragraphs = _paragraphs(text, anchors)
        seen: set[str] = set()
        sequence: list[str] = []
        seq_values: list[float | None] = []
        for _, key in anchors:
            if key not in seen:
                seen.add(key)
                sequence.append(key)
                seq_values.append(float(key[1:]) if key.startswith("#") else None)
        links = doc.links or {}
        ident = self._identity_url
        declared = set()
        for key in ("original", "source"):
            u = ident(links.get(key)) if isinstance(links.get(key), str) else None
            if u:
                declared.add(u)
        for alt in links.get("alternates") or []:
            href = alt.get("href") if isinstance(alt, Mapping) else alt
            u = ident(href) if isinstance(href, str) else None
            if u:
                declared.add(u)
        cites = {u for u in (ident(x) for x in links.get("outbound") or [] if isinstance(x, str)) if u}
        identity = {k for k in (ident(doc.url), ident(doc.guid)) if k}
        akey = self._article_key(doc)
        if akey:
            identity.add("article:" + akey)
        own = ident(doc.url)
        declared.discard(own or "")
        cites.discard(own or "")
        f = Features(
            doc=doc,
            ts=doc.published_at.timestamp(),
            identity=frozenset(identity),
            declared=frozenset(declared),
            cites=frozenset(cites - declared),
            image=ident(doc.image),
            figures=values,
            title_figures=title_figures,
            entities=entities,
            names=names,
            sequence=tuple(sequence),
            seq_values=tuple(seq_values),
            seq_index={k: i for i, k in enumerate(sequence) if not k.startswith("#")},
            seq_figures=tuple(sorted((v, i) for i, v in enumerate(seq_values) if v is not None)),
            outlets_named=frozenset(outlets),
            paragraphs=paragraphs,
            minhash=self._minhash(text, locale),
            near_family=_near_family(locale),
        )
        # Set once on the new object, as ``__post_init__`` sets the derived fields: the keys are
        # worked out from the finished features.
        object.__setattr__(f, "blocking", blocking_keys(f, self.thresholds))
        return f

    def _identity_url(self, url: str | None) -> str | None:
        """``identity_url(url)``, kept per spelling: tag, home and section links recur in item
        after item of an outlet."""
        if url is None:
            return None
        urls = self._urls
        if url in urls:
            return urls[url]
        if len(urls) > _CACHE_LIMIT:
            urls.clear()
        found = urls[url] = identity_url(url)
        return found

    def _article_key(self, doc: DedupeDoc) -> str | None:
        if self.article_key is not None:
            key = self.article_key(doc.outlet, doc.url)
            if key:
                return str(key)
        m = _ID_PATTERN.search(doc.url or "")
        return f"{doc.outlet}:{m.group(1)}" if m else None

    def _entities(self, text: str, locale: str) -> list[tuple[int, str, float, bool]]:
        """(offset, key, weight, strong) of every name; outlet names come back as ``@outlet``."""
        lex = self.lexicon
        out: list[tuple[int, str, float, bool]] = []
        latin_locale = locale not in NON_LATIN_LOCALES
        infos = self._latin_infos
        tokens: list[tuple[int, int, _LatinToken]] = []
        for m in _LATIN_TOKEN.finditer(text):
            raw = m.group()
            info = infos.get(raw) or self._latin_info(raw)
            tokens.append((m.start(), m.end(), info))
        if latin_locale:
            # Fast path: a lower-case word is only ever a lexicon form (most words are neither).
            runs: list[list[tuple[int, int, _LatinToken]]] = [[]]
            for tok in tokens:
                info = tok[2]
                if info.plain:
                    if info.plain_hit:
                        out.append((tok[0], info.plain_hit, info.plain_weight, True))
                    if runs[-1]:
                        runs.append([])
                else:
                    runs[-1].append(tok)
        else:
            runs = [tokens]
        for run in runs:
            if run:
                self._latin_run(run, text, latin_locale, out)
        if not latin_locale:
            script = _SCRIPTS[locale]
            if script == "cyrillic":
                words = [(m.start(), m.end(), m.group()) for m in _CYR_TOKEN.finditer(text)]
                self._script_run(words, text, "cyr", lex.cyrillic_word, self._cyr_infos, out)
            elif script == "arabic":
                words = [(m.start(), m.end(), m.group()) for m in _AR_TOKEN.finditer(text)]
                self._script_run(words, text, "ar", lex.arabic_word, self._ar_infos, out)
            else:
                for pos, ent in lex.find_cjk(text):
                    out.append((pos, ent, lex.weight(ent), True))
        return out

    def _latin_info(self, raw: str) -> _LatinToken:
        """Everything about one Latin token that does not depend on where it stands."""
        if len(self._latin_infos) > _CACHE_LIMIT:
            self._latin_infos.clear()
        lex = self.lexicon
        word = raw if raw.isalpha() else _bare(raw)
        low = word.lower()
        plain = word.islower() and word not in lex.first_words and word not in lex.inner_words
        plain_hit = lex.latin_ci.get(word) if plain else None
        squashed = low.replace("-", "").replace(".", "")
        info = _LatinToken(
            word=word,
            low=low,
            plain=plain,
            plain_hit=plain_hit,
            plain_weight=lex.weight(plain_hit) if plain_hit else 0.0,
            span=lex.span(word, "latin"),
            hit=lex.latin(word),
            outlet=self.outlet_names.get(squashed),
            weight_native=_latin_weight_static(word),
            weight_foreign=(0.0, False) if len(word) < 2 or low in STOPWORDS else (0.7, True),
        )
        self._latin_infos[raw] = info
        return info

    def _minhash(self, text: str, locale: str) -> tuple[int, ...] | None:
        """datasketch's ``affine32`` MinHash of the shingles (crc32, fmix32, a·h + b mod 2³²), in
        the compiled kernel (``_minhash.pyx``): three consecutive words, or in Chinese and Japanese
        three consecutive Han/kana characters; None below five distinct shingles."""
        if family(locale) == "cjk":
            joined = "".join(_HAN_KANA_RUN.findall(text))
            shingles = {joined[i : i + 3] for i in range(max(0, len(joined) - 2))}
            if len(shingles) < 5:
                return None
            return _minhash_kernel.minhash_strings(shingles, self._perm_a, self._perm_b)
        return _minhash_kernel.minhash_words(_WORD.findall(text.lower()), self._perm_a, self._perm_b)

    def _latin_run(
        self,
        tokens: list[tuple[int, int, _LatinToken]],
        text: str,
        latin_locale: bool,
        out: list[tuple[int, str, float, bool]],
    ) -> None:
        """Longest lexicon phrase first, then the single word: lexicon entity, outlet, or name."""
        lex = self.lexicon
        i, n_tokens = 0, len(tokens)
        while i < n_tokens:
            start, _, info = tokens[i]
            span = min(info.span, n_tokens - i)
            hit, used = None, 1
            for n in range(span, 1, -1):
                if any(text[tokens[j][1] : tokens[j + 1][0]].strip() for j in range(i, i + n - 1)):
                    continue
                hit = lex.latin(" ".join(t[2].word for t in tokens[i : i + n]))
                if hit:
                    used = n
                    break
            if hit is None:
                hit = info.hit
            i += used
            if hit:
                out.append((start, hit, lex.weight(hit), True))
            elif info.outlet:
                out.append((start, "@" + info.outlet, 0.0, True))
            else:
                if not latin_locale:
                    weight, strong = info.weight_foreign
                elif info.weight_native is None:
                    weight, strong = _sentence_start_weight(text, start)
                else:
                    weight, strong = info.weight_native
                if weight:
                    out.append((start, info.low, weight, strong))

    def _script_run(
        self,
        words: list[tuple[int, int, str]],
        text: str,
        script: str,
        lookup: Callable[[str], str | None],
        cache: dict[str, tuple[int, str | None]],
        out: list[tuple[int, str, float, bool]],
    ) -> None:
        """Lexicon entities in Cyrillic or Arabic words, longest phrase first."""
        lex = self.lexicon
        i, n_words = 0, len(words)
        while i < n_words:
            start, _, word = words[i]
            known = cache.get(word)
            if known is None:
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                known = cache[word] = (lex.span(word, script), lookup(word))
            span = min(known[0], n_words - i)
            hit, used = None, 1
            for n in range(span, 1, -1):
                if any(text[words[j][1] : words[j + 1][0]].strip() for j in range(i, i + n - 1)):
                    continue
                hit = lookup(" ".join(w[2] for w in words[i : i + n]))
                if hit:
                    used = n
                    break
            if hit is None:
                hit = known[1]
            if hit:
                out.append((start, hit, lex.weight(hit), True))
            i += used


_CACHE_LIMIT = 200_000
"""Per-word caches are dropped past this many distinct words (memory stays bounded)."""


@dataclass(frozen=True, slots=True)
class _LatinToken:
    """One Latin token's lexicon and name facts, cached by its spelling."""

    word: str
    low: str
    plain: bool
    """Lower-case and not part of any multi-word form: a lexicon form or nothing."""
    plain_hit: str | None
    plain_weight: float
    span: int
    hit: str | None
    outlet: str | None
    weight_native: tuple[float, bool] | None
    """``_latin_weight`` in a Latin-script text; None when it depends on the position."""
    weight_foreign: tuple[float, bool]
    """... inside a non-Latin text."""


def _paragraphs(
    text: str, anchors: list[tuple[int, str]]
) -> tuple[tuple[tuple[float, ...], frozenset[str]], ...]:
    """The anchors (sorted by position) grouped by the line of ``text`` they sit on."""
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
    lines: dict[int, tuple[list[float], set[str]]] = {}
    for pos, key in anchors:
        line = bisect_right(starts, pos) - 1
        figs, ents = lines.setdefault(line, ([], set()))
        if key.startswith("#"):
            value = float(key[1:])
            if value not in figs:
                figs.append(value)
        else:
            ents.add(key)
    return tuple((tuple(figs), frozenset(ents)) for _, (figs, ents) in sorted(lines.items()))


_NEWLINE = re.compile("\n")


def _bare(word: str) -> str:
    """A token without ``$``, a final dot, an elided article (l', d') or a possessive 's."""
    word = word.lstrip("$").rstrip(".")
    if len(word) > 3 and word[1] in "'’" and word[0] in "lLdDjJsSnN":
        word = word[2:]
    if word.endswith(("'s", "’s")):
        word = word[:-2]
    return word


def _parse_locale(doc: DedupeDoc) -> str:
    """The declared locale, unless detection found a language of another family."""
    lang = doc.language
    if lang and family(lang) != family(doc.locale):
        return lang
    return doc.locale


def _near_family(locale: str) -> str:
    base = locale.split("-")[0].lower()
    return base


def _distinct(figures: list[Figure], tolerance: float) -> tuple[tuple[float, float], ...]:
    out: list[list[float]] = []
    for fig in figures:
        for entry in out:
            if abs(entry[0] - fig.value) <= tolerance * max(entry[0], fig.value):
                entry[1] = max(entry[1], fig.weight)
                break
        else:
            out.append([fig.value, fig.weight])
    return tuple((v, w) for v, w in out)


def _latin_weight_static(word: str) -> tuple[float, bool] | None:
    """How much a Latin token outside the lexicon counts as a name in a Latin-script text, and
    whether it survives translation (acronyms, CamelCase, digits: strong) or may be a translated
    title-case word (weak). None: a title-case word, which counts unless it opens a sentence."""
    low = word.lower()
    if len(word) < 2 or low in STOPWORDS:
        return 0.0, False
    if word.isupper() and len(word) <= 10:
        return 0.7, True
    upper = sum(c.isupper() for c in word)
    if any(c.isdigit() for c in word) or upper >= 2 or (word[0].islower() and upper):
        return 0.7, True
    if word[0].isupper() and len(word) >= 3:
        return None
    return 0.0, False


def _sentence_start_weight(text: str, start: int) -> tuple[float, bool]:
    """A title-case word at the start of a line or sentence says nothing; elsewhere it is a name."""
    gap_start = start
    while gap_start > 0 and text[gap_start - 1].isspace():
        gap_start -= 1
    if gap_start == 0 or "\n" in text[gap_start:start] or text[gap_start - 1] in _OPENERS:
        return 0.0, False
    return 0.6, False

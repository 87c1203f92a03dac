"""Which member of a story a reader of one locale gets: the fallback table and Accept-Language.

The table (``FALLBACKS``) is the single place that says what a reader is served when no member
is written in their locale. A reader of locale L gets, in order:

1. a member in L;
2. each fallback step of L, in order (a step may convert a member's script with OpenCC; the
   entry is then marked ``converted``);
3. the original's locale (the canonical member), so every story can be served —
   unless that locale is in L's ``never`` set (``uk`` readers never get Russian by default):
   such a story is left out of L's feed.

| requested | then                        | never |
|-----------|-----------------------------|-------|
| pt-PT     | pt-BR → en                  |       |
| pt-BR     | pt-PT → en                  |       |
| zh-TW     | zh-CN as s2twp → en         |       |
| zh-CN     | zh-TW as t2s → en           |       |
| uk        | en                          | ru    |
| any other | en                          |       |
| en        | (original)                  |       |

``create_app(..., fallbacks=...)`` takes another table of the same shape, and the setting
``BABELWIRE_LOCALE_FALLBACKS`` replaces rows of this one (see ``parse_fallbacks``), e.g.
``uk=en,!ru;fr=es,en``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple, Protocol

import opencc

from core.errors import ConfigError
from core.locales import LOCALES, REGISTRY

_BY_LOWER = {code.lower(): code for code in LOCALES}


@dataclass(frozen=True)
class Step:
    """Serve a member written in ``locale``; ``convert`` is the OpenCC config applied to it."""

    locale: str
    convert: str | None = None


@dataclass(frozen=True)
class Chain:
    """What a reader of one locale falls back to, and which locales they are never served."""

    steps: tuple[Step, ...] = ()
    never: frozenset[str] = field(default_factory=frozenset)


def _chain_of(steps: Iterable[str]) -> Chain:
    """A chain from steps in ``BABELWIRE_LOCALE_FALLBACKS`` syntax (``zh-CN:s2twp``, ``!ru``)."""
    steps = tuple(steps)
    return Chain(
        steps=tuple(Step(*s.partition(":")[::2]) if ":" in s else Step(s) for s in steps if s[0] != "!"),
        never=frozenset(s[1:] for s in steps if s[0] == "!"),
    )


def _chain(*steps: str | tuple[str, str], never: Iterable[str] = ()) -> Chain:
    return Chain(
        steps=tuple(Step(s) if isinstance(s, str) else Step(s[0], s[1]) for s in steps),
        never=frozenset(never),
    )


FALLBACKS: Mapping[str, Chain] = {loc.code: _chain_of(loc.fallback) for loc in REGISTRY}
"""The fallback table documented above, from the locale registry (``fallback`` of each
``core/locale_data/<code>.toml``); every locale has a row."""


def parse_fallbacks(text: str, base: Mapping[str, Chain] = FALLBACKS) -> dict[str, Chain]:
    """``base`` with rows replaced from ``BABELWIRE_LOCALE_FALLBACKS`` syntax.

    ``LOCALE=STEP,STEP,…;LOCALE=…`` where a step is a locale, ``locale:opencc-config`` (a
    converted fallback, e.g. ``zh-CN:s2twp``) or ``!locale`` (never served to this reader).
    Example: ``uk=en,!ru;fr=es,en``. ConfigError (one line) on anything else.
    """
    table = dict(base)
    for row in filter(None, (part.strip() for part in text.split(";"))):
        head, sep, body = row.partition("=")
        reader = parse_locale(head)
        if not sep or reader is None:
            raise ConfigError(f"BABELWIRE_LOCALE_FALLBACKS: {row!r} is not LOCALE=STEP,… with a known locale")
        steps: list[Step] = []
        never: set[str] = set()
        for raw in filter(None, (x.strip() for x in body.split(","))):
            banned = raw.startswith("!")
            code, _, convert = raw.lstrip("!").partition(":")
            locale = parse_locale(code)
            if locale is None or (banned and convert):
                raise ConfigError(f"BABELWIRE_LOCALE_FALLBACKS: bad step {raw!r} in {row!r}")
            if banned:
                never.add(locale)
            else:
                steps.append(Step(locale, convert or None))
        table[reader] = Chain(steps=tuple(steps), never=frozenset(never))
    return table


def chain_for(locale: str, table: Mapping[str, Chain] = FALLBACKS) -> Chain:
    return table.get(locale) or _chain("en")


def format_fallbacks(table: Mapping[str, Chain]) -> str:
    """Every row of ``table`` in ``BABELWIRE_LOCALE_FALLBACKS`` syntax (``parse_fallbacks`` reads it
    back): how the writers of the precomputed feed entries learn the table the API was given."""
    rows = []
    for code in sorted(table):
        chain = table[code]
        steps = [f"{s.locale}:{s.convert}" if s.convert else s.locale for s in chain.steps]
        steps += [f"!{loc}" for loc in sorted(chain.never)]
        rows.append(f"{code}={','.join(steps)}")
    return ";".join(rows)


def reader_locales(locale: str, table: Mapping[str, Chain] = FALLBACKS) -> tuple[str, ...]:
    """The locales a reader of ``locale`` reads, in order: the locale, then its fallback steps, then
    ``en``. The disclaimer follows it: the reader's own text, the next one only when none exists."""
    out = [locale]
    for step in chain_for(locale, table).steps:
        if step.locale not in out:
            out.append(step.locale)
    if "en" not in out:
        out.append("en")
    return tuple(out)


def parse_locale(value: str) -> str | None:
    """One of the thirteen codes, matched case-insensitively (``pt-pt`` → ``pt-PT``); else None."""
    return _BY_LOWER.get(value.strip().lower().replace("_", "-"))


def _base(code: str) -> str:
    return code.split("-", 1)[0].lower()


def member_locale(declared: str, detected: str | None) -> str:
    """The locale a member is really written in.

    The source's declared locale, unless offline detection found another *language* (an
    ``en`` feed carrying Russian text). Detection cannot tell pt-PT from pt-BR or zh-CN from
    zh-TW, so within one language the declaration wins.
    """
    if detected and detected in LOCALES and _base(detected) != _base(declared):
        return detected
    return declared


def _tag_to_locale(tag: str) -> str | None:
    """One language tag of Accept-Language mapped onto the thirteen locales."""
    tag = tag.strip().lower().replace("_", "-")
    if not tag:
        return None
    exact = _BY_LOWER.get(tag)
    if exact:
        return exact
    parts = tag.split("-")
    base = parts[0]
    rest = set(parts[1:])
    candidates = REGISTRY.of_language(base)
    for loc in candidates:
        if rest & loc.accept_subtags:
            return loc.code
    defaults = [loc.code for loc in candidates if loc.language_default]
    return defaults[0] if defaults else None


def negotiate(accept_language: str | None, default: str = "en") -> str:
    """The best of the thirteen locales for an Accept-Language header (q-values honoured).

    ``pt`` → pt-PT, ``pt-BR`` → pt-BR, ``zh-Hant``/``zh-HK``/``zh-TW`` → zh-TW, ``zh``/
    ``zh-Hans`` → zh-CN; ``*``, garbage or nothing → ``default``. Ties keep header order.
    """
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language[:2000].split(",")):
        tag, _, params = part.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if q <= 0.0:
            continue
        tag = tag.strip()
        locale = default if tag == "*" else _tag_to_locale(tag)
        if locale:
            ranked.append((-q, position, locale))
    return min(ranked)[2] if ranked else default


class Member(Protocol):
    """What locale selection needs to know about a member of a story."""

    @property
    def id(self) -> int: ...
    @property
    def effective_locale(self) -> str: ...
    @property
    def is_original(self) -> bool: ...
    @property
    def published_at(self) -> datetime: ...


class Choice(NamedTuple):
    """The member served to a reader, in which locale, and the script conversion applied."""

    member_index: int
    locale_served: str
    converted: str | None


def _preference(m: Member) -> tuple[bool, datetime, int]:
    return (not m.is_original, m.published_at, m.id)


def best_by_locale(members: Sequence[Member]) -> dict[str, int]:
    """For each locale, the index of its preferred member: the original, then the earliest."""
    best: dict[str, int] = {}
    for i, m in enumerate(members):
        j = best.get(m.effective_locale)
        if j is None or _preference(m) < _preference(members[j]):
            best[m.effective_locale] = i
    return best


def in_chain(requested: str, best: Mapping[str, int], table: Mapping[str, Chain] = FALLBACKS) -> bool:
    """Whether a story with members in ``best``'s locales has a version in the reader's chain (the
    locale itself or a fallback step, a converted zh one included): the default feed's rule."""
    return requested in best or any(step.locale in best for step in chain_for(requested, table).steps)


def choose(
    members: Sequence[Member],
    requested: str,
    table: Mapping[str, Chain] = FALLBACKS,
    *,
    strict: bool = True,
    best: Mapping[str, int] | None = None,
) -> Choice | None:
    """The member to serve a reader of ``requested``; None when every member is in a ``never``
    locale (``strict``; with ``strict=False`` — a story asked for by id — the original is served).
    ``best`` is ``best_by_locale(members)`` when the caller has it already.
    """
    if not members:
        return None
    chain = chain_for(requested, table)
    if best is None:
        best = best_by_locale(members)
    if requested in best:
        return Choice(best[requested], requested, None)
    for step in chain.steps:
        if step.locale in best:
            served = requested if step.convert else step.locale
            return Choice(best[step.locale], served, step.convert)
    originals = [i for i, m in enumerate(members) if m.is_original]
    if originals:
        index = originals[0]
    else:
        index = min(range(len(members)), key=lambda i: (members[i].published_at, members[i].id))
    if members[index].effective_locale in chain.never:
        allowed = [i for i, m in enumerate(members) if m.effective_locale not in chain.never]
        if allowed:
            index = min(allowed, key=lambda i: _preference(members[i]))
        elif strict:
            return None
    return Choice(index, members[index].effective_locale, None)


class ScriptConverter:
    """OpenCC converters (zh-Hans ↔ zh-Hant), built once per config and shared by threads.

    Conversion is a pure function of (text, config), so results are memoized (bounded LRU): the
    same titles are converted for every reader of a page.
    """

    def __init__(self, cache_size: int = 8192) -> None:
        self._lock = threading.Lock()
        self._converters: dict[str, opencc.OpenCC] = {}
        self._cached = lru_cache(maxsize=cache_size)(self._convert)

    def convert(self, text: str, config: str) -> str:
        return self._cached(text, config) if text else text

    def _convert(self, text: str, config: str) -> str:
        with self._lock:
            converter = self._converters.get(config)
            if converter is None:
                converter = self._converters[config] = opencc.OpenCC(config)
            return str(converter.convert(text))


@lru_cache(maxsize=1)
def valid_locales_message() -> str:
    return "valid locales: " + ", ".join(LOCALES)

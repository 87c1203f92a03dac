"""Normalize stage: a :class:`~aggregator.parse.RawEntry` → a :class:`NormalizedEntry`.

Fixed order, pure (no I/O, no clock: "now" is the fetch time):

1. URLs: the link, image, alternates and source become absolute (against the feed URL), with
   tracking parameters, fragments and default ports removed (:func:`canonical_url`).
2. Dates: aware UTC; a missing date becomes the fetch time, a date more than a day past the
   fetch time is clamped to it (feeds that pre-date articles would otherwise pin them on top).
3. Title: plain text, entities decoded (twice when the feed double-escaped them).
4. Body: sanitized with nh3 **last**, in one pass that also makes its URLs absolute and strips
   their tracking parameters. Everything read from the body afterwards (text, outbound links,
   the "original" attribution link) is read from the sanitized HTML, which is never changed.
5. Text (title + body, paragraphs as lines) feeds language detection, tickers and the
   content hash that ``decide`` compares.

Language: the source's declared locale is kept unless the text clearly says otherwise — see
:func:`detect_language`. The "original" link follows the attribution conventions described at
:func:`_original_link`.
"""

from __future__ import annotations

import functools
import hashlib
import html
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import nh3

from aggregator.parse import ParsedFeed, RawEntry, parse_feed

__all__ = [
    "NormalizedEntry",
    "canonical_url",
    "detect_language",
    "extract_tickers",
    "normalize_entry",
    "prepare_feed",
]


@dataclass(frozen=True)
class NormalizedEntry:
    """An entry ready for ``decide`` and ``store``: clean URLs, UTC dates, safe HTML."""

    guid: str | None
    link: str | None
    """Absolute, tracking parameters removed."""
    title: str
    summary_html: str
    content_html: str
    """Sanitized with nh3; URLs absolute."""
    text: str
    """Plain text of title and body, one paragraph per line, for dedupe."""
    published_at: datetime
    image: str | None
    author: str | None
    language: str | None
    tickers: tuple[str, ...]
    links: dict[str, Any]
    """{"alternates": [{"href", "hreflang"}], "source", "original", "outbound": [≤ 20 urls]}."""
    content_hash: str


FUTURE_TOLERANCE = timedelta(days=1)
MAX_OUTBOUND = 20
MIN_DETECT_CHARS = 40

# --- URLs -----------------------------------------------------------------------------------

_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "twclid",
        "ttclid",
        "igshid",
        "li_fat_id",
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "_hsenc",
        "_hsmi",
        "__hstc",
        "__hssc",
        "__hsfp",
        "hsctatracking",
        "_ga",
        "_gl",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "vero_conv",
        "rss_id",
        "at_medium",
        "at_campaign",
        "cmpid",
        "s_cid",
        "spm",
    }
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_URL_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def canonical_url(url: str, base: str | None = None) -> str | None:
    """An absolute http(s) URL in one spelling, or None when ``url`` cannot be made one.

    Lower-case scheme and host, no default port, no fragment, tracking parameters removed,
    unsafe characters percent-encoded (existing escapes kept), ``&amp;`` artefacts of
    double-escaped feeds undone. Idempotent: ``canonical_url(canonical_url(u)) == canonical_url(u)``.
    """
    if _PLAIN_URL.fullmatch(url):  # already in canonical spelling: most image and body URLs
        return url
    return _canonical_url(url, base)


# An absolute http(s) URL that canonical_url returns unchanged, whatever the base: lower-case
# host without port, a path of characters that need no escaping, no query, no fragment.
_PLAIN_URL = re.compile(r"https?://[a-z0-9_-]+(?:\.[a-z0-9_-]+)*/[A-Za-z0-9/._~%-]*")


@functools.lru_cache(maxsize=8192)
def _canonical_url(url: str, base: str | None) -> str | None:
    url = _URL_CONTROL.sub("", url.replace("&amp;", "&")).strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        # urljoin gives back an absolute http(s) URL with a host as it was (but for an empty
        # ";params", which it drops), so only relative and odd URLs pay for it.
        if base and not (parts.netloc and parts.scheme in _DEFAULT_PORTS and ";" not in parts.path):
            parts = urlsplit(urljoin(base, url))
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        host = _canonical_host(parts.hostname or "")
        port = parts.port
        if host is None:
            return None
        netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
        path = quote(parts.path, safe=_PATH_SAFE) or "/"
        query = _strip_tracking(parts.query)
    except ValueError:  # also UnicodeError: bad ports, brackets, IDNA, lone surrogates
        return None
    return urlunsplit((scheme, netloc, path, query, ""))


_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")


def _canonical_host(host: str) -> str | None:
    """Lower-case ASCII host (IDNA for non-ASCII names, brackets for IPv6), None if invalid."""
    host = host.rstrip(".").lower()
    if ":" in host:
        return f"[{ipaddress.IPv6Address(host).compressed}]"
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host if _HOST_NAME.fullmatch(host) else None


def _strip_tracking(query: str) -> str:
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        key = pair.split("=", 1)[0].lower()
        if key in _TRACKING_PARAMS or key.startswith(_TRACKING_PREFIXES):
            continue
        kept.append(quote(pair, safe=_QUERY_SAFE))
    return "&".join(kept)


# --- HTML -----------------------------------------------------------------------------------

ALLOWED_TAGS = frozenset(
    {
        "p",
        "a",
        "img",
        "ul",
        "ol",
        "li",
        "b",
        "i",
        "strong",
        "em",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "figure",
        "figcaption",
        "br",
        "pre",
        "code",
        "hr",
        # layout and tables: harmless without attributes, and they keep text boundaries
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "hreflang"},
    "img": {"src", "alt", "title", "width", "height"},
    "blockquote": {"cite"},
}
_URL_ATTRIBUTES = frozenset({"href", "src", "cite"})
_LINK_REL = "noopener noreferrer nofollow"

_WHITESPACE = re.compile(r"\s+")
_BLOCK = re.compile(r"</?(?:p|div|li|ul|ol|h[1-6]|blockquote|figure|figcaption|pre|table|tr|br|hr)\b[^>]*>")
_CELL_END = re.compile(r"</t[dh]>")
_TAG = re.compile(r"<[^>]*>")
_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.DOTALL)
_HREF = re.compile(r'\shref="([^"]*)"')
_URL_ATTR = re.compile(r'\s(?:href|src)="([^"]*)"')
_LITERAL_NEWLINE = re.compile(r"\\n(?![a-z])")
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


@functools.lru_cache(maxsize=512)
def _cleaner(base: str | None) -> nh3.Cleaner:
    """One sanitizer per base URL; its attribute filter makes URLs absolute and canonical.

    nh3 checks URL schemes before the filter runs and the filter only ever returns http(s)
    URLs or the value it was given, so the filter cannot smuggle an unsafe URL through.
    """

    def absolutize(tag: str, attribute: str, value: str) -> str | None:
        # Called by nh3 for every kept attribute: non-URL ones and canonical URLs return at once.
        if attribute not in _URL_ATTRIBUTES or _PLAIN_URL.fullmatch(value):
            return value
        return _canonical_url(value, base) or value

    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in _ALLOWED_ATTRIBUTES.items()},
        attribute_filter=absolutize,
        link_rel=_LINK_REL,
        url_schemes={"http", "https", "mailto"},
        url_relative=("rewrite_with_base", base) if base else "deny",
    )


def sanitize_html(fragment: str, base: str | None) -> str:
    """Safe HTML: allowed tags only, no scripts/styles/iframes/event handlers, absolute URLs."""
    if not fragment:
        return ""
    return _cleaner(base).clean(fragment).strip()


def html_to_text(fragment: str) -> str:
    """Plain text of (sanitized) HTML: tags dropped, entities decoded, one paragraph per line."""
    if not fragment:
        return ""
    text = _CELL_END.sub(" ", _BLOCK.sub("\n", _WHITESPACE.sub(" ", fragment)))
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@functools.cache
def _tag_stripper() -> nh3.Cleaner:
    return nh3.Cleaner(tags=set(), attributes={}, link_rel=None)


def _title_text(title_html: str) -> str:
    """Plain-text title; a second unescape undoes feeds that escaped their entities twice."""
    text = " ".join(html.unescape(_tag_stripper().clean(title_html)).split())
    if "&" in text and _ENTITY.search(text):
        text = " ".join(html.unescape(text).split())
    return text


# --- the "original" link --------------------------------------------------------------------

# Phrases that attribute a text to its original, in our locales. An anchor whose text holds
# one, or the first anchor starting within _ATTRIBUTION_WINDOW characters after one, is the
# "original" link ("Originally published on <a>BlockTempo</a>", "原文連結：<a>…</a>",
# "<a>Ver original</a>"). Kept deliberately simple; dedupe weighs it with other signals.
_ATTRIBUTION = re.compile(
    r"\b(?:original\w*|originel\w*|asli|source\s*:|fuente\s*:|fonte\s*:|sumber\s*:|nguồn\s*:|bài\s+gốc)"
    r"|原文|原始链接|原始連結|元記事|出典|出处|出處|来源[:：]|來源[:：]"
    r"|оригинал\w*|первоисточник\w*|оригінал\w*|першоджерел\w*|источник\s*:|джерело\s*:"
    r"|المصدر|الأصلي",
    re.IGNORECASE,
)
_ATTRIBUTION_WINDOW = 60
# Every attribution phrase holds one of these stems. Anchor text and the text before an anchor
# are pieces of the body's text, so a body whose text holds no stem has no attribution link:
# most bodies are ruled out with one search instead of converting each piece between anchors.
_ATTRIBUTION_STEM = re.compile(
    r"original|originel|asli|source|fuente|fonte|sumber|nguồn|bài"
    r"|原文|原始链接|原始連結|元記事|出典|出处|出處|来源|來源"
    r"|оригинал|первоисточник|оригінал|першоджерел|источник|джерело|المصدر|الأصلي",
    re.IGNORECASE,
)


def _original_link(body_html: str, own_link: str | None, body_text: str | None = None) -> str | None:
    """The attribution link of the body; ``body_text`` is ``html_to_text(body_html)`` if known."""
    if "<a" not in body_html:
        return None
    if body_text is None:
        body_text = html_to_text(body_html)
    if _ATTRIBUTION_STEM.search(body_text) is None:
        return None
    previous_end = 0
    for match in _ANCHOR.finditer(body_html):
        href_match = _HREF.search(match.group(1))
        href = _http_url(html.unescape(href_match.group(1))) if href_match else None
        before = html_to_text(body_html[previous_end : match.start()]).rsplit("\n", 1)[-1]
        previous_end = match.end()
        if href is None or href == own_link:
            continue
        anchor_text = html_to_text(match.group(2))
        if _ATTRIBUTION.search(anchor_text) or _ATTRIBUTION.search(before[-_ATTRIBUTION_WINDOW:]):
            return href
    return None


def _http_url(value: str) -> str | None:
    return value if value.startswith(("http://", "https://")) else None


def _outbound_links(bodies: Iterable[str], own_link: str | None) -> list[str]:
    found: dict[str, None] = {}
    for body in bodies:
        for match in _URL_ATTR.finditer(body):
            url = _http_url(html.unescape(match.group(1)))
            if url and url != own_link:
                found.setdefault(url)
                if len(found) >= MAX_OUTBOUND:
                    return list(found)
    return list(found)


# --- tickers --------------------------------------------------------------------------------

# Tickers matched bare (upper case, not glued to other Latin letters or digits, so they are
# found inside CJK text too). Tickers that are also common words (LINK, DOT, NEAR, OP, ONE,
# UNI, ATOM...) are only taken as cashtags ($LINK).
KNOWN_TICKERS = frozenset(
    [
        "BTC",
        "ETH",
        "SOL",
        "XRP",
        "BNB",
        "DOGE",
        "ADA",
        "TRX",
        "TON",
        "USDT",
        "USDC",
        "DAI",
        "AVAX",
        "SHIB",
        "MATIC",
        "LTC",
        "BCH",
        "XLM",
        "XMR",
        "ETC",
        "HBAR",
        "APT",
        "ARB",
        "SUI",
        "ICP",
        "FIL",
        "PEPE",
        "WLD",
        "TIA",
        "INJ",
        "STX",
        "RNDR",
        "FDUSD",
        "PYUSD",
        "TUSD",
        "USDE",
        "ENA",
        "LDO",
        "AAVE",
        "MKR",
        "CRV",
        "WBTC",
        "STETH",
        "OKB",
        "BGB",
        "GT",
        "HT",
        "LEO",
        "CRO",
        "KAS",
        "TAO",
        "FET",
        "ALGO",
        "VET",
        "EOS",
        "XTZ",
        "SAND",
        "MANA",
        "AXS",
        "APE",
        "GRT",
        "IMX",
        "FLOKI",
        "BONK",
        "WIF",
        "JUP",
        "PYTH",
        "ORDI",
        "SATS",
        "ZEC",
        "DASH",
        "NEO",
        "QNT",
        "THETA",
        "EGLD",
        "FTM",
        "RUNE",
        "CAKE",
        "SNX",
        "COMP",
        "YFI",
        "ZRO",
        "STRK",
        "ZK",
        "BLUR",
        "JTO",
    ]
)
_NOT_CASHTAGS = frozenset(
    [
        "US",
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CNY",
        "HKD",
        "TWD",
        "SGD",
        "AUD",
        "CAD",
        "NZD",
        "CHF",
        "MXN",
        "BRL",
        "RUB",
        "UAH",
        "VND",
        "IDR",
        "KRW",
        "INR",
        "AR",
        "CA",
        "AU",
        "HK",
        "NZ",
        "SG",
    ]
)
# A known ticker written bare is a whole run of Latin letters and digits: one cheap tokenizing
# pass and a set lookup find the same tickers as a pattern of every ticker between boundaries.
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]+")
_CASHTAG = re.compile(r"(?<![A-Za-z0-9$])\$([A-Za-z]{2,10})(?![A-Za-z0-9])")


def extract_tickers(text: str) -> tuple[str, ...]:
    """Sorted tickers in ``text``: cashtags ($btc → BTC) and known tickers written bare.

    Fullwidth forms (ＢＴＣ) are folded first; a known ticker counts wherever it is not glued to
    other Latin letters or digits, so "比特币BTC跌破" yields BTC where ``\\b`` would not.
    """
    if not text:
        return ()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    found = set(_ALNUM_RUN.findall(text)) & KNOWN_TICKERS
    if "$" in text:
        for tag in _CASHTAG.findall(text):
            upper = tag.upper()
            if upper not in _NOT_CASHTAGS:
                found.add(upper)
    return tuple(sorted(found))


# --- language -------------------------------------------------------------------------------

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
_STOPWORDS = {
    "en": frozenset(
        [
            "the",
            "and",
            "of",
            "to",
            "in",
            "is",
            "for",
            "on",
            "that",
            "with",
            "as",
            "by",
            "at",
            "from",
            "its",
            "this",
            "has",
            "was",
            "are",
            "be",
            "will",
            "have",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "la",
            "los",
            "las",
            "de",
            "del",
            "que",
            "y",
            "en",
            "un",
            "una",
            "por",
            "con",
            "para",
            "es",
            "se",
            "al",
            "su",
            "lo",
            "más",
            "como",
            "pero",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "des",
            "de",
            "du",
            "et",
            "en",
            "un",
            "une",
            "est",
            "pour",
            "que",
            "qui",
            "dans",
            "sur",
            "au",
            "aux",
            "pas",
            "par",
            "ce",
            "il",
            "sont",
        ]
    ),
    "pt": frozenset(
        [
            "o",
            "a",
            "os",
            "as",
            "de",
            "do",
            "da",
            "dos",
            "das",
            "que",
            "e",
            "em",
            "um",
            "uma",
            "para",
            "com",
            "não",
            "por",
            "no",
            "na",
            "é",
            "ao",
            "se",
            "mais",
        ]
    ),
    "id": frozenset(
        [
            "yang",
            "dan",
            "di",
            "ke",
            "dari",
            "ini",
            "itu",
            "untuk",
            "dengan",
            "pada",
            "dalam",
            "tidak",
            "akan",
            "adalah",
            "oleh",
            "juga",
            "telah",
        ]
    ),
    "vi": frozenset(
        [
            "và",
            "của",
            "là",
            "các",
            "có",
            "được",
            "trong",
            "cho",
            "một",
            "những",
            "với",
            "không",
            "này",
            "đã",
            "người",
            "từ",
            "khi",
        ]
    ),
}
_LATIN_LOCALES = frozenset({"en", "es", "fr", "pt", "id", "vi"})
_LOCALE_SCRIPTS = {
    **dict.fromkeys(_LATIN_LOCALES, "latin"),
    "ru": "cyrillic",
    "uk": "cyrillic",
    "zh": "cjk",
    "ja": "cjk",
    "ar": "arabic",
}
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
    if base in _LATIN_LOCALES and scores[base] and scores[base] >= max(scores.values()):
        return declared
    detected = _lingua_locale(sample)
    if detected is None and base not in _LATIN_LOCALES:
        # Latin text under a non-Latin locale: the script already says the locale is wrong.
        best = max(scores, key=scores.__getitem__)
        detected = ("pt-BR" if best == "pt" else best) if scores[best] >= 3 else None
    if detected is None or detected.split("-", 1)[0] == base:
        return declared or detected
    return detected


@functools.cache
def _lingua() -> tuple[Any, dict[Any, str]]:
    """Build the lingua detector on first use: restricted to our languages, low-accuracy mode."""
    from lingua import Language, LanguageDetectorBuilder

    locales = {
        Language.CHINESE: "zh-CN",
        Language.ENGLISH: "en",
        Language.VIETNAMESE: "vi",
        Language.SPANISH: "es",
        Language.RUSSIAN: "ru",
        Language.FRENCH: "fr",
        Language.PORTUGUESE: "pt-BR",
        Language.INDONESIAN: "id",
        Language.JAPANESE: "ja",
        Language.ARABIC: "ar",
        Language.UKRAINIAN: "uk",
    }
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


# --- the entry ------------------------------------------------------------------------------


def normalize_entry(raw: RawEntry, *, feed_url: str, locale: str, fetched_at: datetime) -> NormalizedEntry:
    """Normalize one parsed entry of the source at ``feed_url`` (declared ``locale``)."""
    fetched_at = _as_utc(fetched_at)
    base = canonical_url(feed_url)
    link = canonical_url(raw.link, base) if raw.link else None
    if link is None and raw.guid and raw.guid.startswith(("http://", "https://")):
        link = canonical_url(raw.guid, base)

    summary_html = sanitize_html(raw.summary_html, base)
    content_html = sanitize_html(raw.content_html, base)
    body_html = content_html or summary_html
    plain = html_to_text(body_html)
    body_text = _LITERAL_NEWLINE.sub("\n", plain) if "\\" in plain else plain
    if not body_text and content_html:
        body_html, body_text = summary_html, html_to_text(summary_html)
        plain = body_text
    title = _title_text(raw.title)
    if title:
        text = f"{title}\n{body_text}" if body_text else title
    else:
        title, text = _fallback_title(body_text), body_text

    published = raw.published or raw.updated
    published_at = _as_utc(published) if published else fetched_at
    if published_at > fetched_at + FUTURE_TOLERANCE:
        published_at = fetched_at

    image = canonical_url(raw.image, base) if raw.image else None
    alternates = []
    for href, hreflang in raw.alternates:
        absolute = canonical_url(href, base)
        if absolute and absolute != link:
            alternates.append({"href": absolute, "hreflang": hreflang})
    links: dict[str, Any] = {
        "alternates": alternates,
        "source": canonical_url(raw.source_url, base) if raw.source_url else None,
        "original": _original_link(body_html, link, plain),
        "outbound": _outbound_links((content_html, summary_html), link),
    }
    author = " ".join(raw.author.split()) if raw.author else None
    return NormalizedEntry(
        guid=raw.guid.strip() if raw.guid and raw.guid.strip() else None,
        link=link,
        title=title,
        summary_html=summary_html,
        content_html=content_html,
        text=text,
        published_at=published_at,
        image=image,
        author=author or None,
        language=detect_language(text, locale),
        tickers=extract_tickers(text),
        links=links,
        content_hash=hashlib.sha256(f"{title}\n{text}".encode()).hexdigest(),
    )


def prepare_feed(
    body: bytes, *, url: str, content_type: str | None, locale: str, fetched_at: datetime
) -> tuple[ParsedFeed, list[NormalizedEntry]]:
    """Parse a fetched body and normalize its entries: the CPU-bound half of a source update.

    A module-level function of plain arguments, so a worker process can run it (the poller
    sends big bodies to a process pool). The parsed feed comes back without its raw entries,
    which the normalized ones replace: half the bytes to send back.
    """
    parsed = parse_feed(body, url=url, content_type=content_type)
    # Relative entry links resolve against the site, as readers do (Miniflux does the same).
    site = parsed.link if parsed.link and parsed.link.startswith(("http://", "https://")) else url
    entries = [
        normalize_entry(raw, feed_url=site, locale=locale, fetched_at=fetched_at) for raw in parsed.entries
    ]
    return replace(parsed, entries=()), entries


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _fallback_title(body_text: str, limit: int = 120) -> str:
    """Title-less entries (micro-posts) get their first line, cut at a word, as title."""
    first = body_text.split("\n", 1)[0]
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0] if " " in first[:limit] else first[:limit]
    return cut.rstrip() + "…"

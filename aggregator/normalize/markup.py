"""HTML: the sanitizer (nh3, URLs made absolute and canonical) and the one HTML-to-text."""

from __future__ import annotations

import functools
import html
import re

import nh3

from aggregator.normalize.urls import PLAIN_URL, _canonical_url

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
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


@functools.lru_cache(maxsize=512)
def _cleaner(base: str | None) -> nh3.Cleaner:
    """One sanitizer per base URL; its attribute filter makes URLs absolute and canonical.

    nh3 checks URL schemes before the filter runs and the filter only ever returns http(s)
    URLs or the value it was given, so the filter cannot smuggle an unsafe URL through.
    """

    def absolutize(tag: str, attribute: str, value: str) -> str | None:
        # Called by nh3 for every kept attribute: non-URL ones and canonical URLs return at once.
        if attribute not in _URL_ATTRIBUTES or PLAIN_URL.fullmatch(value):
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


def html_to_text(fragment: str, *, one_line: bool = False) -> str:
    """Plain text of (sanitized) HTML: tags dropped, entities decoded, one paragraph per line.

    ``one_line``: every tag is a space and the text one line (the API's ``summary_text``).
    """
    if not fragment:
        return ""
    if one_line:
        return _WHITESPACE.sub(" ", html.unescape(_TAG.sub(" ", fragment))).strip()
    text = _CELL_END.sub(" ", _BLOCK.sub("\n", _WHITESPACE.sub(" ", fragment)))
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


@functools.cache
def _tag_stripper() -> nh3.Cleaner:
    return nh3.Cleaner(tags=set(), attributes={}, link_rel=None)


def title_text(title_html: str) -> str:
    """Plain-text title; a second unescape undoes feeds that escaped their entities twice."""
    text = " ".join(html.unescape(_tag_stripper().clean(title_html)).split())
    if "&" in text and _ENTITY.search(text):
        text = " ".join(html.unescape(text).split())
    return text

"""Links read from a sanitized body: the "original" attribution link and outbound links."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from aggregator.normalize.markup import html_to_text
from core.locales import REGISTRY

MAX_OUTBOUND = 20
_ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.DOTALL)
_HREF = re.compile(r'\shref="([^"]*)"')
_URL_ATTR = re.compile(r'\s(?:href|src)="([^"]*)"')


def _alternatives(latin: bool, field: str) -> list[str]:
    """The registry's attribution patterns (``field``) of Latin-script locales, or of the others."""
    found: dict[str, None] = {}
    for loc in REGISTRY:
        if (loc.script == "latin") == latin:
            found.update(dict.fromkeys(getattr(loc, field)))
    return list(found)


# Phrases that attribute a text to its original, per locale in the registry (``attribution``). An
# anchor whose text holds one, or the first anchor starting within _ATTRIBUTION_WINDOW characters
# after one, is the "original" link ("Originally published on <a>BlockTempo</a>", "原文連結：<a>…</a>",
# "<a>Ver original</a>"). Latin-script phrases start at a word boundary. Kept deliberately simple;
# dedupe weighs it with other signals.
_ATTRIBUTION = re.compile(
    "|".join(
        [r"\b(?:" + "|".join(_alternatives(True, "attribution")) + ")", *_alternatives(False, "attribution")]
    ),
    re.IGNORECASE,
)
_ATTRIBUTION_WINDOW = 60
# Every attribution phrase holds one of these stems (``attribution_stems``). Anchor text and the
# text before an anchor are pieces of the body's text, so a body whose text holds no stem has no
# attribution link: most bodies are ruled out with one search instead of converting each piece
# between anchors.
_ATTRIBUTION_STEM = re.compile(
    "|".join(_alternatives(True, "attribution_stems") + _alternatives(False, "attribution_stems")),
    re.IGNORECASE,
)


def original_link(body_html: str, own_link: str | None, body_text: str | None = None) -> str | None:
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


def outbound_links(bodies: Iterable[str], own_link: str | None) -> list[str]:
    found: dict[str, None] = {}
    for body in bodies:
        for match in _URL_ATTR.finditer(body):
            url = _http_url(html.unescape(match.group(1)))
            if url and url != own_link:
                found.setdefault(url)
                if len(found) >= MAX_OUTBOUND:
                    return list(found)
    return list(found)

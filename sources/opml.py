"""OPML 2.0 import and export of sources.

A feed outline needs ``xmlUrl`` (http or https) and ``language`` (one of the thirteen locales,
matched case-insensitively); ``outlet`` is optional and otherwise derived from the feed's host.
Category outlines may carry ``language``/``outlet`` for the feeds nested in them.

The whole document is validated before anything is returned, so an import is all or nothing, and
every problem is one ``CatalogueError`` line naming the outline:
``outline 3 "Gate pt" (https://…): unknown locale 'pt-XX'``. Documents with a DOCTYPE or entity
declarations are refused outright (entity expansion bombs, external entities).
"""

from __future__ import annotations

import io
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.parsers import expat

from core.errors import CatalogueError
from core.locales import LOCALES
from sources.catalogue import OUTLET_ID, http_url_problem, outlet_for_url

MAX_URL = 2000
MAX_TITLE = 500
MAX_DEPTH = 64
_LOCALE_BY_FOLD = {locale.lower(): locale for locale in LOCALES}
_SECOND_LEVEL = frozenset({"ac", "co", "com", "edu", "gov", "net", "org"})


@dataclass(frozen=True)
class SourceSpec:
    """One feed to poll: what ``sources add`` and an OPML outline both describe."""

    url: str
    outlet: str
    locale: str
    title: str | None = None


def canonical_locale(value: str) -> str | None:
    """``"pt-br"``/``"PT_BR"`` → ``"pt-BR"``; None when it is not one of the thirteen locales."""
    return _LOCALE_BY_FOLD.get(value.strip().replace("_", "-").lower())


def parse_opml(data: bytes) -> list[SourceSpec]:
    """Every feed outline of an OPML document, in document order; identical repeats collapse."""
    root = _parse_xml(data)
    if root.tag != "opml":
        raise CatalogueError(f"not an OPML document: root element is <{root.tag}>")
    version = root.get("version", "2.0").strip()
    if version not in ("1.0", "1.1", "2.0"):
        raise CatalogueError(f"unsupported OPML version {version!r}")
    body = root.find("body")
    if body is None:
        raise CatalogueError("OPML document has no <body>")

    specs: list[SourceSpec] = []
    seen: dict[str, tuple[int, SourceSpec]] = {}
    number = 0
    # (element, depth, inherited language, inherited outlet); reversed so pops follow document order
    stack: list[tuple[ET.Element, int, str | None, str | None]] = [
        (child, 1, None, None) for child in reversed(body.findall("outline"))
    ]
    while stack:
        outline, depth, language, outlet = stack.pop()
        number += 1
        label = _label(number, outline)
        if depth > MAX_DEPTH:
            raise CatalogueError(f"{label}: outlines nested deeper than {MAX_DEPTH} levels")
        language = outline.get("language", language)
        outlet = outline.get("outlet", outlet)
        children = outline.findall("outline")
        stack.extend((child, depth + 1, language, outlet) for child in reversed(children))
        if outline.get("xmlUrl") is None:
            if children:
                continue
            raise CatalogueError(f"{label}: missing xmlUrl")
        spec = _feed(outline, language, outlet, label)
        if spec.url in seen:
            first_number, first = seen[spec.url]
            if first == spec:
                continue
            raise CatalogueError(
                f"{label}: xmlUrl already listed by outline {first_number} with other attributes"
            )
        seen[spec.url] = (number, spec)
        specs.append(spec)
    return specs


def export_opml(sources: Iterable[SourceSpec], title: str = "babelwire sources") -> bytes:
    """An OPML 2.0 document that ``parse_opml`` reads back to the same specs."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    for spec in sources:
        attrs = {"type": "rss", "text": spec.title or ""}
        if spec.title is not None:
            attrs["title"] = spec.title
        attrs.update(xmlUrl=spec.url, language=spec.locale, outlet=spec.outlet)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    out = io.BytesIO()
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out.getvalue() + b"\n"


class _Declaration(Exception):
    """Raised from expat handlers to stop at a DOCTYPE or entity declaration."""


def _refuse(*_: object) -> None:
    raise _Declaration


def _parse_xml(data: bytes) -> ET.Element:
    # A first pass with expat refuses declarations before ElementTree could expand anything.
    guard = expat.ParserCreate()
    guard.StartDoctypeDeclHandler = _refuse
    guard.EntityDeclHandler = _refuse
    guard.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        guard.Parse(data, True)
    except _Declaration:
        raise CatalogueError(
            "OPML document refused: DOCTYPE and ENTITY declarations are not allowed"
        ) from None
    except expat.ExpatError as exc:
        raise CatalogueError(f"not an XML document: {exc}") from None
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise CatalogueError(f"not an XML document: {exc}") from None


def _label(number: int, outline: ET.Element) -> str:
    parts = [f"outline {number}"]
    name = _one_line(outline.get("text") or outline.get("title") or "")
    if name:
        parts.append('"' + (name if len(name) <= 60 else name[:59] + "…") + '"')
    url = _one_line(outline.get("xmlUrl") or "")
    if url:
        parts.append(f"({url if len(url) <= 120 else url[:119] + '…'})")
    return " ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _feed(outline: ET.Element, language: str | None, outlet: str | None, label: str) -> SourceSpec:
    url = (outline.get("xmlUrl") or "").strip()
    if problem := http_url_problem(url):
        raise CatalogueError(f"{label}: {problem}")
    if len(url) > MAX_URL:
        raise CatalogueError(f"{label}: xmlUrl longer than {MAX_URL} characters")

    if language is None or not language.strip():
        raise CatalogueError(f"{label}: missing language (one of {' '.join(LOCALES)})")
    locale = canonical_locale(language)
    if locale is None:
        raise CatalogueError(f"{label}: unknown locale {_one_line(language)!r}")

    if outlet is not None:
        outlet_id = outlet.strip().lower()
        if not OUTLET_ID.fullmatch(outlet_id):
            raise CatalogueError(f"{label}: outlet {_one_line(outlet)!r} is not a slug (a-z, 0-9, - and _)")
    else:
        derived = outlet_for_url(url) or _slug_from_host(url)
        if derived is None:
            raise CatalogueError(
                f"{label}: cannot derive an outlet from the URL's host; add an outlet attribute"
            )
        outlet_id = derived

    title = (outline.get("title") or "").strip() or (outline.get("text") or "").strip() or None
    if title is not None and len(title) > MAX_TITLE:
        raise CatalogueError(f"{label}: title longer than {MAX_TITLE} characters")
    return SourceSpec(url=url, outlet=outlet_id, locale=locale, title=title)


def _slug_from_host(url: str) -> str | None:
    """``www.blocktempo.com`` → ``blocktempo``, ``forklog.com.ua`` → ``forklog``; None for IPs and bare names."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        labels = labels[:-2]
    else:
        labels = labels[:-1]
    if not labels:
        return None
    slug = re.sub(r"[^a-z0-9_-]+", "-", labels[-1]).strip("-_")[:64]
    return slug if OUTLET_ID.fullmatch(slug) else None

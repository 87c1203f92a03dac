"""Parse stage: feed bytes → :class:`ParsedFeed`, never an exception.

RSS 0.9x/1.0/2.0 and Atom 0.3/1.0 go through feedparser, always on the bytes (wrapped in a
stream, so feedparser can neither fetch a URL nor open a local file named by the body).
feedparser 6.0 does not read JSON Feed, so JSON Feed 1.0/1.1 is mapped here by hand.

Markup is left as feedparser found it (no sanitizing, no URL resolving): the normalize stage
does both, in its own order, and sanitizes last. Text fields that a feed declared as plain text
are HTML-escaped here, so that ``title``, ``summary_html`` and ``content_html`` are always
HTML fragments and normalize treats every format alike.

Every text that leaves this stage is XML-safe (``clean_text``): C0/C1 control characters and NUL
are dropped and lone surrogates (a JSON Feed may escape ``"\ud800"``) become U+FFFD, once, here,
so that no later stage, database or re-exported feed ever sees them.

One malformed entry costs only itself: an entry that cannot be read (a JSON Feed item that is
not an object, an ``<item>`` with no id, link, title or body, any entry whose reading fails) is
left out and counted in ``skipped``; the others are kept.

A bozo feed (broken XML, wrong charset, odd content type) is accepted when entries came out;
the bozo reason is kept for the source row. ``error`` is set only when the document cannot be
used at all: empty body, not a feed (an HTML page, a blob), or no entries from a broken feed.
"""

from __future__ import annotations

import calendar
import html
import io
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import feedparser

__all__ = ["ParsedFeed", "RawEntry", "clean_text", "parse_feed"]


@dataclass(frozen=True)
class RawEntry:
    """One entry as the feed wrote it; text fields are HTML fragments."""

    guid: str | None
    link: str | None
    title: str
    summary_html: str
    content_html: str
    published: datetime | None
    """Aware UTC when the feed had a date, else None."""
    updated: datetime | None
    author: str | None
    image: str | None
    """media:content / media:thumbnail / image enclosure / first ``<img>`` of the body."""
    alternates: tuple[tuple[str, str | None], ...]
    """(href, hreflang) of ``rel=alternate`` links to other versions (locales) of the entry."""
    source_url: str | None
    """RSS ``<source url=…>``, Atom ``<source>`` link, JSON Feed ``external_url``."""
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFeed:
    """The entries of one document, plus what went wrong with it."""

    entries: tuple[RawEntry, ...]
    title: str | None
    language: str | None
    link: str | None
    bozo: str | None
    """The reason feedparser flagged the document as broken, when it did."""
    error: str | None
    """Set when the document is unusable; ``entries`` is then empty."""
    skipped: int = 0
    """Entries left out because they could not be read (wrong types, nothing in them): the
    feed's other entries are kept; the count goes on the source row."""


_IMG_SRC = re.compile(r"""<img\b[^>]*?\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp|svg)(?:$|[?#@])", re.IGNORECASE)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_XML_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_FALLBACK_ENCODINGS = frozenset({"windows-1252", "iso-8859-2"})
# Encodings tried when feedparser fell back to a Western code page, most likely first. A
# candidate wins only if its text is full of very common CJK characters (see _cjk_score).
_CJK_ENCODINGS = ("gb18030", "cp950", "big5hkscs", "shift_jis", "euc-jp")
_COMMON_CJK = frozenset(
    "的一是不了在人有我他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后"
    "這來國個說們為時會過學對裡後與發經開關資幣區塊鏈幣價格交易所"
    "币价格交易所区块链发经开关资与"
    "のにはをたがでてとしれさいるかもなあこ"
)


def parse_feed(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Parse one fetched document; expected failures come back in ``error``, not as exceptions.

    ``url`` is where the document came from; relative URLs in it stay relative here and are
    resolved against it by normalize (see ``_feedparser`` for why feedparser does not).
    """
    if not body or not body.strip():
        return _unusable("empty body")
    if _looks_like_json(body, content_type):
        return _cleaned(_parse_json_feed(body))
    parsed = _feedparser(body, content_type=content_type)
    parsed = _recover_cjk(body, parsed, content_type=content_type)
    return _cleaned(_from_feedparser(parsed, body))


_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
"""C0 controls other than tab/LF/CR (illegal in XML 1.0), DEL and C1 controls, U+FFFE/U+FFFF."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """``text`` without control characters, lone surrogates replaced by U+FFFD: what any XML 1.0
    document, JSON encoder and database can carry. Every other character (RTL marks, emoji, all
    planes) is kept."""
    if _UNSAFE.search(text) is None:
        return text
    text = _SURROGATE.sub("\ufffd", text)
    return _NOT_XML_TEXT.sub("", text)


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, tuple):
        return tuple(_clean_value(v) for v in value)
    return value


def _cleaned(feed: ParsedFeed) -> ParsedFeed:
    entries = tuple(
        replace(entry, **{f.name: _clean_value(getattr(entry, f.name)) for f in fields(RawEntry)})
        for entry in feed.entries
    )
    return replace(
        feed,
        entries=entries,
        title=_clean_value(feed.title),
        language=_clean_value(feed.language),
        link=_clean_value(feed.link),
        bozo=_clean_value(feed.bozo),
        error=_clean_value(feed.error),
    )


def _unusable(reason: str, bozo: str | None = None) -> ParsedFeed:
    return ParsedFeed(entries=(), title=None, language=None, link=None, bozo=bozo, error=reason)


def _feedparser(body: bytes, *, content_type: str | None) -> Any:
    # Without a content type feedparser would call the document bozo ("no Content-type"),
    # so a missing header is taken as generic XML: the XML declaration then picks the charset.
    # No content-location on purpose: feedparser would resolve permalink guids against it
    # ("item-7" → "https://host/feed/item-7"), tying entry identities to the source URL.
    # Relative links are resolved by normalize, against the feed URL, all the same.
    headers = {"content-type": content_type or "application/xml"}
    return feedparser.parse(
        io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )


def _recover_cjk(body: bytes, parsed: Any, *, content_type: str | None) -> Any:
    """Re-read a CJK feed that declared the wrong charset instead of keeping cp1252 mojibake.

    feedparser falls back to windows-1252 when the declared charset fails; GB2312, Big5 and
    Shift_JIS bytes usually decode "successfully" as windows-1252, so Chinese text would be
    garbled. Only on that fallback path, the CJK encodings are tried and the one whose text
    is made of common characters wins; the document is re-parsed as UTF-8.
    """
    if parsed.get("encoding") not in _FALLBACK_ENCODINGS or not parsed.get("bozo"):
        return parsed
    best: tuple[int, str] | None = None
    for encoding in _CJK_ENCODINGS:
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError:
            continue
        score = _cjk_score(text)
        if score and (best is None or score > best[0]):
            best = (score, text)
    if best is None:
        return parsed
    utf8 = _XML_DECLARATION.sub(b"", best[1].encode("utf-8"), count=1)
    utf8 = b'<?xml version="1.0" encoding="utf-8"?>\n' + utf8.lstrip()
    reparsed = _feedparser(utf8, content_type=_with_utf8_charset(content_type))
    if not reparsed.entries and parsed.entries:
        return parsed
    reparsed["bozo"] = True
    reparsed["bozo_exception"] = parsed.get("bozo_exception")
    return reparsed


def _cjk_score(text: str) -> int:
    """How many very common CJK characters the text holds; 0 when it does not read as CJK."""
    cjk = [ch for ch in text if "\u3040" <= ch <= "\u9fff"]
    if len(cjk) < 2:
        return 0
    common = sum(1 for ch in cjk if ch in _COMMON_CJK)
    return common if common >= 2 and common * 10 >= len(cjk) else 0


def _with_utf8_charset(content_type: str | None) -> str:
    mime = (content_type or "application/xml").split(";", 1)[0].strip() or "application/xml"
    return f"{mime}; charset=utf-8"


def _from_feedparser(parsed: Any, body: bytes) -> ParsedFeed:
    feed = parsed.get("feed") or {}
    bozo = _bozo_reason(parsed)
    entries, skipped = _readable(_raw_entry, parsed.get("entries") or ())
    title = _clean_str(dict.get(feed, "title"))
    language = _clean_str(dict.get(feed, "language"))
    link = _clean_str(dict.get(feed, "link"))
    if not entries:
        if not parsed.get("version"):
            kind = "an HTML page" if _looks_like_html(body) else (bozo or "no feed elements")
            return _unusable(f"not a feed: {kind}", bozo)
        if bozo:
            return _unusable(f"no entries in a broken feed: {bozo}", bozo)
    return ParsedFeed(
        entries=entries, title=title, language=language, link=link, bozo=bozo, error=None, skipped=skipped
    )


def _has_content(entry: RawEntry) -> bool:
    """An entry with no id, link, title or body (a truncated ``<item>``) is dropped."""
    return bool(entry.guid or entry.link or entry.title or entry.summary_html or entry.content_html)


def _readable(read: Callable[[Any], RawEntry], items: Iterable[Any]) -> tuple[tuple[RawEntry, ...], int]:
    """``read`` of every item that can be read and has content, and how many could not."""
    entries: list[RawEntry] = []
    skipped = 0
    for item in items:
        try:
            entry = read(item)
        except Exception:  # whatever one entry holds, it costs only itself
            skipped += 1
            continue
        if _has_content(entry):
            entries.append(entry)
        else:
            skipped += 1
    return tuple(entries), skipped


def _bozo_reason(parsed: Any) -> str | None:
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    if exc is None:
        return "malformed feed"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _raw_entry(entry: dict[str, Any]) -> RawEntry:
    # dict.get bypasses FeedParserDict's key aliases (and their deprecation warnings).
    get = dict.get
    summary = _as_html(get(entry, "summary"), get(entry, "summary_detail"))
    content = _first_content(get(entry, "content"))
    links = get(entry, "links") or ()
    link = _entry_link(links) or _clean_str(get(entry, "link"))
    return RawEntry(
        guid=_clean_str(get(entry, "id")),
        link=link,
        title=_as_html(get(entry, "title"), get(entry, "title_detail"), multiline=False),
        summary_html=summary,
        content_html=content,
        published=_struct_to_utc(get(entry, "published_parsed")),
        updated=_struct_to_utc(get(entry, "updated_parsed")),
        author=_author(entry),
        image=_image(entry, content or summary),
        alternates=_alternates(links, link),
        source_url=_source_url(get(entry, "source")),
        tags=_tags(get(entry, "tags") or ()),
    )


_HTML_START = re.compile(
    rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL
)


def _looks_like_html(body: bytes) -> bool:
    return _HTML_START.match(body[:4096].lstrip(b"\xef\xbb\xbf")) is not None


def _entry_link(links: Iterable[Mapping[str, Any]]) -> str | None:
    """The entry's own link: the first ``rel=alternate`` without ``hreflang``, else the first.

    feedparser's ``link`` is the *last* alternate it saw, so an entry listing its translations
    (``hreflang="ja"`` …) after its own link would be filed under the Japanese URL.
    """
    first: str | None = None
    for item in links:
        href = _clean_str(item.get("href"))
        if not href or item.get("rel", "alternate") != "alternate":
            continue
        if not _clean_str(item.get("hreflang")):
            return href
        first = first or href
    return first


def _clean_str(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _as_html(value: object, detail: object, *, multiline: bool = True) -> str:
    """Return an HTML fragment: plain-text values are escaped, line breaks kept as ``<br>``."""
    if not isinstance(value, str):
        return ""
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    if kind is None or kind in _HTML_TYPES:
        return value
    escaped = html.escape(value, quote=False)
    return escaped.replace("\n", "<br>\n") if multiline else escaped


def _first_content(contents: object) -> str:
    """The first HTML body among the entry's contents, else the first body of any type."""
    if not isinstance(contents, list) or not contents:
        return ""
    for item in contents:
        if isinstance(item, Mapping) and item.get("type") in _HTML_TYPES and item.get("value"):
            return str(item["value"])
    first = contents[0]
    return _as_html(first.get("value"), first) if isinstance(first, Mapping) else ""


def _struct_to_utc(value: object) -> datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _author(entry: dict[str, Any]) -> str | None:
    author = _clean_str(dict.get(entry, "author"))
    if author:
        return author
    detail = dict.get(entry, "author_detail")
    return _clean_str(detail.get("name")) if isinstance(detail, Mapping) else None


def _image(entry: dict[str, Any], body: str) -> str | None:
    for media in dict.get(entry, "media_content") or ():
        url = _clean_str(media.get("url"))
        kind = str(media.get("type") or "")
        medium = str(media.get("medium") or "")
        if url and (medium == "image" or kind.startswith("image/") or (not kind and _IMAGE_EXT.search(url))):
            return url
    for thumb in dict.get(entry, "media_thumbnail") or ():
        url = _clean_str(thumb.get("url"))
        if url:
            return url
    for link in dict.get(entry, "links") or ():
        if link.get("rel") == "enclosure" and str(link.get("type") or "").startswith("image/"):
            url = _clean_str(link.get("href"))
            if url:
                return url
    return first_img_src(body)


def first_img_src(body: str) -> str | None:
    """The ``src`` of the first ``<img>`` in an HTML fragment, entities decoded."""
    match = _IMG_SRC.search(body)
    if match is None:
        return None
    return _clean_str(html.unescape(next(group for group in match.groups() if group is not None)))


def _alternates(links: Iterable[Mapping[str, Any]], link: str | None) -> tuple[tuple[str, str | None], ...]:
    found: list[tuple[str, str | None]] = []
    for item in links:
        href = _clean_str(item.get("href"))
        if not href or item.get("rel", "alternate") != "alternate":
            continue
        hreflang = _clean_str(item.get("hreflang"))
        if (hreflang or href != link) and all(href != seen for seen, _ in found):
            found.append((href, hreflang))
    return tuple(found)


def _source_url(source: object) -> str | None:
    if not isinstance(source, Mapping):
        return None
    return _clean_str(source.get("href")) or _clean_str(source.get("link"))


def _tags(tags: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for tag in tags:
        name = _clean_str(tag.get("term")) or _clean_str(tag.get("label"))
        if name:
            names.setdefault(name)
    return tuple(names)


# JSON Feed (https://www.jsonfeed.org/version/1.1/) ------------------------------------------


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("application/feed+json", "application/json") or mime.endswith("+json"):
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


JSON_MAX_DEPTH = 64
"""Arrays and objects nested deeper than this are read as null when the whole document is nested
too deeply for ``json`` (past Python's recursion limit): one such member costs only itself."""
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def _without_deep_values(text: str, max_depth: int = JSON_MAX_DEPTH) -> str:
    """``text`` with every array or object that opens below ``max_depth`` levels replaced by null
    (strings are skipped whole, so brackets inside them do not count)."""
    out: list[str] = []
    depth = kept_to = 0
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token in ("[", "{"):
            depth += 1
            if depth == max_depth + 1:
                out += (text[kept_to : m.start()], "null")
        elif token in ("]", "}"):
            if depth == max_depth + 1:
                kept_to = m.end()
            depth -= 1
    out.append(text[kept_to:] if depth <= max_depth else "")
    return "".join(out)


def _parse_json_feed(body: bytes) -> ParsedFeed:
    text = body.decode("utf-8-sig", errors="replace")
    try:
        try:
            document = json.loads(text)
        except RecursionError:  # one member nested past the limit: read the rest without it
            document = json.loads(_without_deep_values(text))
    except (ValueError, RecursionError) as exc:
        return _unusable(f"not a feed: invalid JSON ({exc})")
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return _unusable("not a feed: JSON without an items list")
    version = document.get("version")
    bozo = None
    if not (isinstance(version, str) and "jsonfeed.org" in version):
        bozo = "JSON document without a JSON Feed version"
    entries, skipped = _readable(_json_entry, document["items"])
    if not entries and bozo:
        return _unusable(f"not a feed: {bozo}", bozo)
    return ParsedFeed(
        entries=entries,
        title=_clean_str(document.get("title")),
        language=_clean_str(document.get("language")),
        link=_clean_str(document.get("home_page_url")),
        bozo=bozo,
        error=None,
        skipped=skipped,
    )


def _list(value: object) -> list[Any]:
    """A JSON array member, or nothing when the feed put another type there."""
    return value if isinstance(value, list) else []


def _json_entry(item: object) -> RawEntry:
    """One JSON Feed item; optional members of the wrong type are ignored, an item that is not an
    object raises (and is skipped)."""
    if not isinstance(item, dict):
        raise TypeError(f"JSON Feed item is a {type(item).__name__}, not an object")
    item_id = item.get("id")
    guid = (
        _clean_str(str(item_id)) if isinstance(item_id, str | int) and not isinstance(item_id, bool) else None
    )
    text = item.get("content_text")
    content = _clean_str(item.get("content_html")) or (
        html.escape(text, quote=False).replace("\n", "<br>\n") if isinstance(text, str) else ""
    )
    summary = item.get("summary")
    image = _clean_str(item.get("image")) or _clean_str(item.get("banner_image"))
    if image is None:
        for attachment in _list(item.get("attachments")):
            if isinstance(attachment, dict) and str(attachment.get("mime_type") or "").startswith("image/"):
                image = _clean_str(attachment.get("url"))
                if image:
                    break
    return RawEntry(
        guid=guid,
        link=_clean_str(item.get("url")),
        title=html.escape(item["title"], quote=False) if isinstance(item.get("title"), str) else "",
        summary_html=html.escape(summary, quote=False) if isinstance(summary, str) else "",
        content_html=content,
        published=_rfc3339_to_utc(item.get("date_published")),
        updated=_rfc3339_to_utc(item.get("date_modified")),
        author=_json_author(item),
        image=image or first_img_src(content),
        alternates=(),
        source_url=_clean_str(item.get("external_url")),
        tags=tuple(
            dict.fromkeys(
                tag.strip() for tag in _list(item.get("tags")) if isinstance(tag, str) and tag.strip()
            )
        ),
    )


def _json_author(item: Mapping[str, Any]) -> str | None:
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) else [item.get("author")]
    for author in candidates:
        if isinstance(author, dict):
            name = _clean_str(author.get("name"))
            if name:
                return name
    return None


def _rfc3339_to_utc(value: object) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or one UTC cannot hold (year 1 at +14:00)
        return None

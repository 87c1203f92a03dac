"""Stories as Google Reader items: JSON (``stream/contents``, ``stream/items/contents``) and Atom
(``/reader/atom``, newsboat 2.21's feedhq mode).

An item carries every field some client requires (``../shared/research/greader.md`` §3): the long
id; ``published`` as an integer (newsboat ≥2.24 drops an item with a string); ``canonical`` and
``alternate`` links (Fluent Reader reads ``canonical[0].href`` unguarded); ``summary`` (required by
NetNewsWire); ``categories`` with the states as ``user/-/state/com.google/…`` (the only form
newsboat matches); ``origin.streamId`` equal to a subscription id; ``enclosure`` empty (newsboat
and the ``google-reader`` client disagree on its keys). The content is the one the re-export
gives (``api.export.document.content_html``): the served summary, the credit to the original,
then the disclaimer for the key's locale.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core

from api.caching import Rendered
from api.export.document import content_html, esc, parse_time
from api.greader.ids import FRESH, LABEL_PREFIX, READ, READING_LIST, STARRED, long_id
from api.greader.streams import Outlet, Row, micros
from core.locales import REGISTRY

Json = dict[str, Any]
_RTL = frozenset(loc.code for loc in REGISTRY if loc.script == "arabic")


@dataclass(frozen=True)
class Item:
    """One story ready to write in either format."""

    story_id: int
    title: str
    url: str
    author: str
    content: str
    published: datetime
    stored: datetime
    locale: str
    tickers: tuple[str, ...]
    read: bool
    starred: bool
    origin: Outlet | None


def build_item(row: Row, locale: str, disclaimer: Json | None, origin: Outlet | None, base: str) -> Item:
    entry = pydantic_core.from_json(row.body + "}")
    return Item(
        story_id=row.story_id,
        title=entry["title"],
        url=entry["url"] or entry["original"]["url"] or f"{base}/v1/stories/{row.story_id}?locale={locale}",
        author=entry["outlet"]["name"],
        content=content_html(entry, locale, disclaimer),
        published=parse_time(entry["published_at"]),
        stored=row.stored_at,
        locale=entry["locale_served"],
        tickers=tuple(entry["tickers"]),
        read=row.read,
        starred=row.starred,
        origin=origin,
    )


def categories(item: Item, *, flags: bool = True) -> list[str]:
    """The reading list, the item's labels and (with ``flags``) the key's states on it."""
    out = [READING_LIST, *(LABEL_PREFIX + t for t in item.tickers)]
    if flags and item.read:
        out.append(READ)
    if flags and item.starred:
        out.append(STARRED)
    return out


def item_json(item: Item, *, flags: bool = True) -> Json:
    """The item as plain values; ``categories`` last (:func:`item_fragment` relies on it)."""
    published_s = int(item.published.timestamp())
    origin = item.origin
    return {
        "id": long_id(item.story_id),
        "crawlTimeMsec": str(micros(item.stored) // 1000),
        "timestampUsec": str(micros(item.published)),
        "published": published_s,
        "updated": published_s,
        "title": item.title,
        "author": item.author,
        "canonical": [{"href": item.url}],
        "alternate": [{"href": item.url, "type": "text/html"}],
        "summary": {"direction": "rtl" if item.locale in _RTL else "ltr", "content": item.content},
        "origin": {
            "streamId": f"feed/{origin.number}" if origin else "",
            "title": origin.name if origin else item.author,
            "htmlUrl": (origin.homepage or "") if origin else "",
        },
        "enclosure": [],
        "categories": categories(item, flags=flags),
    }


@dataclass(frozen=True)
class Fragment:
    """An item's JSON without the key's flags and its closing ``]}`` (:func:`item_fragment`), made
    once per rendered item: as bytes, as a self-contained piece of raw deflate (:func:`deflated`)
    and with a digest of the bytes (for the response's ETag)."""

    raw: bytes
    packed: bytes
    digest: bytes

    @classmethod
    def of(cls, raw: bytes) -> Fragment:
        return cls(raw, deflated(raw), hashlib.blake2b(raw, digest_size=12).digest())


def item_fragment(item: Item) -> Fragment:
    """The item's JSON without the key's flags and its closing ``]}``: rendered once, the flags are
    appended per request (:func:`contents_rendered`)."""
    return Fragment.of(pydantic_core.to_json(item_json(item, flags=False))[:-2])


def deflated(data: bytes) -> bytes:
    """``data`` as raw deflate blocks that refer to nothing before them and end on a byte boundary
    (a sync flush): such pieces, concatenated and closed by :data:`_DEFLATE_END`, are one valid
    deflate stream of the concatenated data, so a body of cached items is compressed once per item
    rather than once per response."""
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush(zlib.Z_SYNC_FLUSH)


def stored(data: bytes) -> bytes:
    """``data`` as stored (uncompressed) deflate blocks, which like :func:`deflated`'s pieces refer
    to nothing and end on a byte boundary: for the few bytes around the items, where starting a
    compressor would cost more than it saves."""
    out = []
    for i in range(0, len(data), 0xFFFF):
        chunk = data[i : i + 0xFFFF]
        out.append(b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk)
    return b"".join(out)


GZIP_LEVEL = 5
_DEFLATE_END = b"\x03\x00"
"""An empty final block (fixed Huffman): ends a deflate stream after a sync flush."""
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""Deflate, no name or time, unknown OS (RFC 1952)."""
_READ = b',"' + READ.encode() + b'"'
_STARRED = b',"' + STARRED.encode() + b'"'
_SUFFIXES = {
    (read, starred): (raw, deflated(raw), bytes((read, starred)))
    for read in (False, True)
    for starred in (False, True)
    for raw in [b"".join((_READ if read else b"", _STARRED if starred else b"", b"]}"))]
}
"""The key's flags and the item's closing ``]}``, by (read, starred): as bytes, as deflate, and as
what the response's ETag hashes after the item's digest."""
_COMMA = (b",", deflated(b","))


def with_flags(fragment: Fragment, read: bool, starred: bool) -> bytes:
    return fragment.raw + _SUFFIXES[(read, starred)][0]


def contents_rendered(
    stream_id: str, items: Sequence[tuple[Fragment, bool, bool]], updated: int, continuation: str | None
) -> Rendered:
    """``{"id", "updated", "items", "continuation"?}`` of items with the key's flags, with its gzip
    variant made from the items' compressed fragments (no compression of the whole body) and an ETag
    from the items' digests and everything else in the body."""
    head = b"".join((b'{"id":', pydantic_core.to_json(stream_id), b',"updated":', str(int(updated)).encode(),
                     b',"items":['))  # fmt: skip
    tail = (
        b"]"
        + (b',"continuation":' + pydantic_core.to_json(continuation) if continuation is not None else b"")
        + b"}"
    )
    raw: list[bytes] = [head]
    packed: list[bytes] = [_GZIP_HEADER, stored(head)]
    tagged: list[bytes] = [head, tail]
    comma, packed_comma = _COMMA
    for fragment, read, starred in items:
        suffix = _SUFFIXES[(read, starred)]
        raw += (fragment.raw, suffix[0], comma)
        packed += (fragment.packed, suffix[1], packed_comma)
        tagged += (fragment.digest, suffix[2])
    if items:
        raw.pop()  # the last comma
        packed.pop()
    raw.append(tail)
    body = b"".join(raw)
    packed += (stored(tail), _DEFLATE_END, struct.pack("<II", zlib.crc32(body), len(body) & 0xFFFFFFFF))
    etag = '"' + hashlib.blake2b(b"".join(tagged), digest_size=12).hexdigest() + '"'
    gz = b"".join(packed)
    return Rendered(body, etag, "application/json", None, _gzip=(gz, etag[:-1] + '-gz"'))


def _atom_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def atom_body(
    stream_id: str, title: str, home: str, items: Sequence[Item], updated: datetime, locale: str
) -> bytes:
    """Atom 1.0 as newsboat 2.21 reads it: ``<id>`` the long item id (the guid it sends back),
    read state as ``<category scheme="http://www.google.com/reader/" label="read|fresh">``."""
    lang = esc(locale)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:gr="http://www.google.com/schemas/reader/atom/" '
        f'xml:lang="{lang}">',
        f"<id>tag:google.com,2005:reader/{esc(stream_id)}</id><title>{esc(title)}</title>",
        f'<link rel="alternate" href="{esc(home)}"/><updated>{_atom_time(updated)}</updated>',
    ]
    for item in items:
        state = "read" if item.read else "fresh"
        labels = "".join(
            f'<category term="{esc(c)}" scheme="http://www.google.com/reader/" label="{esc(c.rsplit("/", 1)[1])}"/>'
            for c in categories(item)
            if c not in (READ,)
        )
        parts.append(
            f'<entry xml:lang="{esc(item.locale)}" gr:crawl-timestamp-msec="{micros(item.stored) // 1000}">'
            f"<id>{long_id(item.story_id)}</id>"
            f'<title type="html">{esc(item.title)}</title>'
            f"<published>{_atom_time(item.published)}</published><updated>{_atom_time(item.published)}</updated>"
            f'<link rel="alternate" href="{esc(item.url)}" type="text/html"/>'
            f'<content type="html">{esc(item.content)}</content>'
            f"<author><name>{esc(item.author)}</name></author>"
            f'<category term="{READ if item.read else FRESH}" scheme="http://www.google.com/reader/" '
            f'label="{state}"/>{labels}</entry>'
        )
    parts.append("</feed>\n")
    return "".join(parts).encode()


def origin_of(row: Row, by_outlet: Mapping[str, Outlet]) -> Outlet | None:
    return by_outlet.get(row.outlet_id) if row.outlet_id else None

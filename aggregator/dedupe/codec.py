"""Stored ``Features``: bytes for ``Item.dedupe_features`` and the key they are valid for.

A dedupe run compares new items with every stored item of a time window around them; extracting
features is most of its cost, so each item keeps its features next to it and a run re-extracts
only items whose ``dedupe_key`` no longer matches. The key hashes everything extraction reads:
the ``DedupeDoc`` built from the item (which includes its outlet), the lexicon's tables, the
outlet names, the thresholds, the article-key rule (with the patterns it applies, when it can
name them) and ``FEATURES_VERSION``.

Blobs are ``marshal`` data (builtin types only: loading one cannot run code), zlib-compressed at
level 1 (the blocking keys kept with the features are mostly URLs and names: 2.9 KB a blob
becomes 1.3 KB, for 16 µs of a 210 µs decode), behind a header
that names the Python version (marshal's format is not stable across versions), the features
version, the ``Features`` field list, and a checksum. Every field of ``Features`` that
``__init__`` takes is stored, except ``doc`` (the caller has it); the derived fields are
recomputed by ``__post_init__``. A blob that does not fit decodes to None: re-extract.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import marshal
import re
import struct
import sys
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from aggregator.dedupe.features import FEATURES_VERSION, DedupeDoc, Extractor, Features

_MAGIC = b"BWF2"
"""BWF1: uncompressed marshal; BWF2: zlib-compressed."""
_HEADER = struct.Struct(">4sBBHII")
"""magic, Python major, Python minor, FEATURES_VERSION, field-list checksum, payload checksum."""
_MARSHAL_VERSION = 4
_MAX_RAW = 64 << 20
"""A blob inflating beyond this is not one this module wrote (features of one item are kilobytes)."""
_PYTHON = sys.version_info[:2]
"""marshal's format may change with the Python version: a blob is read only by the one that wrote it."""
_STORED = tuple(f for f in dataclasses.fields(Features) if f.init and f.name != "doc")
_FIELDS_CRC = zlib.crc32(";".join(f"{f.name}:{f.type}" for f in _STORED).encode())
_DOC_FIELDS = tuple(f.name for f in dataclasses.fields(DedupeDoc))
_CONFIG_DIGESTS: WeakKeyDictionary[Extractor, str] = WeakKeyDictionary()


def encode(f: Features) -> bytes:
    """``f`` without its doc, as header + marshal payload; ValueError on a value marshal cannot hold."""
    values = tuple(getattr(f, field.name) for field in _STORED)
    try:
        # Most features are builtin values already: marshal takes them as they are (it refuses
        # any subclass, a NamedTuple or a Mapping that is not a dict), else they go through _plain.
        raw = marshal.dumps(values, _MARSHAL_VERSION)
    except ValueError:
        try:
            raw = marshal.dumps(tuple(_plain(v) for v in values), _MARSHAL_VERSION)
        except ValueError as e:
            raise ValueError(f"Features field not storable with marshal: {e}") from None
    payload = zlib.compress(raw, 1)
    return _HEADER.pack(_MAGIC, *_PYTHON, FEATURES_VERSION, _FIELDS_CRC, zlib.crc32(payload)) + payload


def decode(blob: bytes | memoryview | None, doc: DedupeDoc) -> Features | None:
    """The ``Features`` of ``doc`` stored in ``blob``, or None when the blob was written by another
    Python, features version or field list, or is damaged (the caller then extracts afresh)."""
    if not blob:
        return None
    data = bytes(blob)
    if len(data) < _HEADER.size:
        return None
    magic, major, minor, version, fields_crc, payload_crc = _HEADER.unpack_from(data)
    expected = (_MAGIC, *_PYTHON, FEATURES_VERSION, _FIELDS_CRC)
    if (magic, major, minor, version, fields_crc) != expected:
        return None
    payload = data[_HEADER.size :]
    if zlib.crc32(payload) != payload_crc:
        return None
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(payload, _MAX_RAW)
        if inflate.unconsumed_tail or not inflate.eof:
            return None
        values = marshal.loads(raw)
        if not isinstance(values, tuple) or len(values) != len(_STORED):
            return None
        return Features(doc, **{field.name: v for field, v in zip(_STORED, values, strict=True)})
    except Exception:  # a blob that passed the checks but still does not fit: extract instead
        return None


def dedupe_key(ex: Extractor, doc: DedupeDoc) -> str:
    """sha256 hex of what ``ex.features(doc)`` depends on: the extractor's configuration and every
    field of ``doc`` (built from the item's title, text, link, guid, image, locale, language,
    tickers, links, publication time and outlet). A changed item or lexicon changes the key."""
    h = hashlib.sha256(config_digest(ex).encode())
    for field in _DOC_FIELDS:
        value = getattr(doc, field)
        # Strings (the long text among them) are hashed as they are, anything else as JSON; the
        # tag and length keep one field's value from passing for another's.
        if isinstance(value, str):
            data, tag = value.encode("utf-8", "surrogatepass"), "s"
        else:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=_json_default)
            data, tag = text.encode("utf-8", "surrogatepass"), "j"
        h.update(f"\0{field}:{tag}{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def config_digest(ex: Extractor) -> str:
    """Digest of what ``ex`` brings to extraction, computed once per extractor.

    The lexicon is digested from its built tables rather than from ``sources/lexicon.tsv``, so a
    lexicon given in code is covered too, as is anything the tables derive from the file
    (zh-Hant forms folded by OpenCC)."""
    found = _CONFIG_DIGESTS.get(ex)
    if found is None:
        rule = ex.article_key
        parts = {
            "features_version": FEATURES_VERSION,
            "lexicon": _canonical(vars(ex.lexicon)),
            "outlet_names": _canonical(ex.outlet_names),
            "thresholds": repr(ex.thresholds),
            "article_key": None if rule is None else _callable_name(rule),
            # A rule that can say what it applies (the catalogue's patterns) is keyed by that too.
            "article_key_rules": _canonical(rule.describe()) if hasattr(rule, "describe") else None,
        }
        text = json.dumps(parts, sort_keys=True, ensure_ascii=False)
        found = _CONFIG_DIGESTS[ex] = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return found


def _callable_name(rule: Any) -> str:
    module = getattr(rule, "__module__", None) or type(rule).__module__
    name = getattr(rule, "__qualname__", None) or type(rule).__qualname__
    return f"{module}.{name}"


_LEAVES = frozenset({str, int, float, bool, type(None), bytes, frozenset, set})
"""Exact types ``_plain`` returns as they are, checked before the (slower) ABC checks below."""


def _plain(value: Any) -> Any:
    """``value`` in the builtin types marshal stores (any Mapping becomes a dict)."""
    if type(value) in _LEAVES:
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _canonical(value: Any) -> Any:
    """A JSON-ready form of ``value`` that is the same in every process (sets and maps sorted)."""
    if isinstance(value, Mapping):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return sorted(items, key=repr)
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)

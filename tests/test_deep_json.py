"""A JSON Feed nested deeper than Python's recursion limit: the member nested too deeply is read as
null and costs only itself; every entry of the feed is kept (before, the whole feed was refused)."""

from __future__ import annotations

import json
import sys

from aggregator.parse import JSON_MAX_DEPTH, _without_deep_values, parse_feed

DEEP = 2 * sys.getrecursionlimit() + 500


def _deep(depth: int) -> str:
    """An array/object chain ``depth`` levels deep, with brackets inside its strings too."""
    return '{"k": "[{", "v": ' * (depth // 2) + '"bottom ]}"' + "}" * (depth // 2)


def _feed(extensions: dict[str, dict[str, str]]) -> bytes:
    """Three items; ``extensions`` adds raw JSON members (too deep to build as Python values)."""
    items = []
    for guid in ("a", "b", "c"):
        item = {
            "id": guid,
            "url": f"https://outlet.example/{guid}",
            "title": f"Item {guid}",
            "content_text": "x",
        }
        items.append(
            json.dumps(item)[:-1]
            + "".join(f', "{k}": {v}' for k, v in extensions.get(guid, {}).items())
            + "}"
        )
    return (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "deep", "items": ['
        + ", ".join(items)
        + "]}"
    ).encode()


def test_a_member_nested_past_the_recursion_limit_costs_only_itself() -> None:
    body = _feed({"b": {"_extension": _deep(DEEP)}, "c": {"tags": "[" * DEEP + "]" * DEEP}})
    try:
        json.loads(body)
        raise AssertionError("the document should be too deep for json.loads")
    except RecursionError:
        pass
    feed = parse_feed(body, url="https://outlet.example/feed.json", content_type="application/feed+json")
    assert feed.error is None
    assert [(e.guid, e.title) for e in feed.entries] == [("a", "Item a"), ("b", "Item b"), ("c", "Item c")]
    assert feed.entries[2].tags == ()


def test_deep_values_are_cut_at_the_limit_and_strings_are_left_alone() -> None:
    text = '{"a": [[[1]]], "s": "[[[{{{", "c": {"d": [2, {"e": 3}]}, "f": 4}'
    assert json.loads(_without_deep_values(text, 2)) == {"a": [None], "s": "[[[{{{", "c": {"d": None}, "f": 4}
    assert _without_deep_values(text, 10) == text
    value, levels = json.loads(_without_deep_values(_deep(DEEP))), 0
    while isinstance(value, dict):
        assert value["k"] == "[{"  # the strings' brackets neither counted nor cut
        value, levels = value["v"], levels + 1
    assert (value, levels) == (None, JSON_MAX_DEPTH)


def test_a_deep_document_that_is_not_json_is_still_refused_in_one_line() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": [' + b"[" * DEEP + b"]"
    feed = parse_feed(body, url="https://outlet.example/feed.json", content_type="application/feed+json")
    assert feed.entries == () and feed.error is not None and "\n" not in feed.error
    assert feed.error.startswith("not a feed: invalid JSON")

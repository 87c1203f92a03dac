"""The demo's stories (``stories.json``), validated and placed in time.

The file uses the corpus shape of ``shared/contract/SCHEMA.md`` (events → stories → versions) plus
what a served feed needs: each version's URL (Gate versions get ``/<locale>/news/detail/<id>`` from
the story's ``article_id``), and per translating outlet the attribution line a translation ends
with. Times are shifted so that the file's ``anchor`` becomes "now": the demo looks live, and the
order of items never changes.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.errors import CatalogueError
from core.locales import LOCALES
from sources.catalogue import OutletSpec, load_catalogue

STORIES_PATH = Path(__file__).with_name("stories.json")


@dataclass(frozen=True)
class DemoItem:
    """One version of one story, as a feed of its outlet and locale carries it."""

    event: str
    story: str
    outlet: str
    locale: str
    url: str
    title: str
    summary: str
    content_html: str
    published: datetime
    image: str | None
    author: str | None
    tickers: tuple[str, ...]
    original_url: str | None
    """The original's URL on translations; None on originals and independent stories."""


def gate_url(locale: str, article_id: str) -> str:
    """Gate's per-locale article URL: every locale shares the numeric id."""
    return f"https://www.gate.com/{locale.lower()}/news/detail/{article_id}"


def load_demo_items(now: datetime | None = None, path: Path | None = None) -> list[DemoItem]:
    """Every version in ``stories.json``, newest first, with times shifted to end just before ``now``."""
    path = path or STORIES_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"{path.name}: cannot read demo stories: {exc}") from exc
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
    anchor = _time(raw["anchor"], path)
    shift = now - anchor
    catalogue = load_catalogue()
    attribution: dict[str, dict[str, dict[str, str]]] = raw.get("attribution", {})

    items: list[DemoItem] = []
    for event in raw["events"]:
        for story in event["stories"]:
            items.extend(_story_items(event["event"], story, attribution, catalogue, anchor, shift, path))
    urls = [item.url for item in items]
    if len(set(urls)) != len(urls):
        raise CatalogueError(f"{path.name}: two versions share one URL")
    items.sort(key=lambda item: (item.published, item.url), reverse=True)
    return items


def _story_items(
    event: str,
    story: dict[str, Any],
    attribution: dict[str, dict[str, dict[str, str]]],
    catalogue: dict[str, OutletSpec],
    anchor: datetime,
    shift: timedelta,
    path: Path,
) -> list[DemoItem]:
    name = story["story"]

    def fail(problem: str) -> CatalogueError:
        return CatalogueError(f"{path.name}: story {name}: {problem}")

    versions: list[dict[str, Any]] = story["versions"]
    originals = [v for v in versions if v.get("original")]
    if len(originals) != 1:
        raise fail(f"needs exactly one original version, has {len(originals)}")
    if story["kind"] == "independent" and len(versions) != 1:
        raise fail("an independent story has a single version")
    published = _time(story["published"], path)

    def url_of(version: dict[str, Any]) -> str:
        if "url" in version:
            return str(version["url"])
        if version["outlet"] == "gate" and "article_id" in story:
            return gate_url(version["locale"], str(story["article_id"]))
        raise fail(f"{version['outlet']}/{version['locale']} has no url")

    original = originals[0]
    original_url = url_of(original)
    items = []
    for version in versions:
        outlet, locale = version["outlet"], version["locale"]
        if outlet not in catalogue:
            raise fail(f"outlet {outlet!r} is not in the catalogue")
        if locale not in LOCALES:
            raise fail(f"unknown locale {locale!r}")
        when = published + timedelta(minutes=int(version.get("lag_minutes", 0)))
        if when > anchor:
            raise fail(f"{outlet}/{locale} is published after the anchor")
        paragraphs: list[str] = version["paragraphs"]
        body = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs)
        is_translation = version is not original
        if is_translation:
            template = attribution.get(outlet, {}).get(locale)
            if template is None:
                raise fail(f"no attribution line for translator {outlet}/{locale}")
            line = template["line"].format(outlet=catalogue[original["outlet"]].name)
            body += (
                f"<p><em>{html.escape(line, quote=False)}</em> "
                f'<a href="{html.escape(original_url)}" rel="original">'
                f"{html.escape(template['link'], quote=False)}</a></p>"
            )
        items.append(
            DemoItem(
                event=event,
                story=name,
                outlet=outlet,
                locale=locale,
                url=url_of(version),
                title=version["title"],
                summary=paragraphs[0],
                content_html=body,
                published=when + shift,
                image=story.get("image"),
                author=version.get("author"),
                tickers=tuple(story.get("tickers", ())),
                original_url=original_url if is_translation else None,
            )
        )
    return items


def _time(value: str, path: Path) -> datetime:
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError as exc:
        raise CatalogueError(f"{path.name}: bad time {value!r}") from exc

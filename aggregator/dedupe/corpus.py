"""Labelled story corpora (``../shared/contract/SCHEMA.md``) as ``DedupeDoc``s, for evaluation.

Docs look the way the contract's ``make_feeds.py`` publishes them and the pipeline stores them:
blind mode gives every version an opaque URL and the story's image; ``hints`` gives one outlet's
versions a shared Gate-style article id and links translations to their original (as a body
link, so it lands in ``links["outbound"]``); ``rehost_images`` gives each outlet its own image URL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from aggregator.dedupe.features import DedupeDoc

DOMAINS = {
    "blocktempo": "www.blocktempo.com",
    "gate": "www.gate.com",
    "cointelegraph": "cointelegraph.com",
    "coindesk": "www.coindesk.com",
    "beincrypto": "beincrypto.com",
    "panews": "www.panewslab.com",
    "coinpost": "coinpost.jp",
    "forklog": "forklog.com",
    "livecoins": "livecoins.com.br",
    "criptonoticias": "www.criptonoticias.com",
}


@dataclass(frozen=True)
class LabelledDoc:
    doc: DedupeDoc
    story: str
    event: str
    original: bool


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _when(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def load_corpus(
    directory: Path, *, hints: bool = False, rehost_images: bool = False, seed: str = "babelwire-contract"
) -> list[LabelledDoc]:
    """Every version in every ``*.json`` file of ``directory``, ordered by (published, url)."""
    rows: list[tuple[str, dict, dict]] = []
    for path in sorted(Path(directory).glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        for story in event.get("stories", []):
            seen = set()
            for v in story.get("versions", []):
                key = (v.get("outlet"), v.get("locale"))
                if key in seen or not v.get("title"):
                    continue
                seen.add(key)
                rows.append((event["event"], story, v))
    urls: dict[tuple[str, str, str], str] = {}
    for _, story, v in rows:
        domain = DOMAINS.get(v["outlet"], f"{v['outlet']}.example")
        loc = v["locale"].lower()
        if hints:
            article = int(_digest(seed, story["story"], v["outlet"])[:12], 16) % 10**8
            url = f"https://{domain}/{loc}/news/detail/{article}"
        else:
            url = (
                f"https://{domain}/{loc}/news/{_digest(seed, story['story'], v['outlet'], v['locale'])[:16]}"
            )
        urls[(story["story"], v["outlet"], v["locale"])] = url
    originals = {
        story["story"]: urls[(story["story"], v["outlet"], v["locale"])]
        for _, story, v in rows
        if v.get("original")
    }
    out: list[LabelledDoc] = []
    for n, (eid, story, v) in enumerate(rows):
        url = urls[(story["story"], v["outlet"], v["locale"])]
        image = story.get("image")
        if image and rehost_images:
            ext = "png" if image.lower().endswith(".png") else "jpg"
            image = (
                f"https://img.{v['outlet']}.example/{_digest(seed, story['story'], v['outlet'])[:12]}.{ext}"
            )
        links: dict[str, object] = {}
        if hints and not v.get("original") and story["story"] in originals:
            links["original"] = originals[story["story"]]
            links["outbound"] = [originals[story["story"]]]
        doc = DedupeDoc(
            id=n + 1,
            locale=v["locale"],
            outlet=v["outlet"],
            url=url,
            title=v["title"],
            text=v["title"] + "\n" + "\n".join(v["paragraphs"]),
            published_at=_when(story["published"]) + timedelta(minutes=v.get("lag_minutes", 0)),
            image=image,
            guid=url,
            links=links,
            tickers=tuple(story.get("tickers") or ()),
        )
        out.append(LabelledDoc(doc, story["story"], eid, bool(v.get("original"))))
    out.sort(key=lambda d: (d.doc.published_at, d.doc.url))
    return out


def truth_of(docs: list[LabelledDoc]) -> dict:
    """The ``truth.json`` shape ``score.py`` expects."""
    return {
        "items": {d.doc.url: d.story for d in docs},
        "stories": {d.story: d.event for d in docs},
        "item_locale": {d.doc.url: d.doc.locale for d in docs},
        "item_outlet": {d.doc.url: d.doc.outlet for d in docs},
        "originals": {d.story: d.doc.url for d in docs if d.original},
    }

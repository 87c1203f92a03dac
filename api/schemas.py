"""Response models: the public contract of the read API, as ``/docs`` shows it to app developers."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OutletRef(BaseModel):
    """The publisher of a member."""

    id: str = Field(description="Stable outlet id, usable as the feed's `outlet` filter.", examples=["gate"])
    name: str = Field(description="Display name.", examples=["Gate News"])


class OriginalRef(BaseModel):
    """The story's original (canonical) member: link to it to credit the author."""

    outlet: OutletRef = Field(description="Publisher of the original.")
    url: str | None = Field(
        description="Link to the original article.", examples=["https://www.blocktempo.com/x/"]
    )
    locale: str = Field(description="Locale the original is written in.", examples=["zh-TW"])


class Translation(BaseModel):
    """Another locale this story can be read in (one entry per locale, the best member)."""

    locale: str = Field(description="A locale with a member of this story.", examples=["en"])
    url: str | None = Field(
        description="Link to that member.", examples=["https://www.gate.com/en/news/detail/123"]
    )


class RelatedRef(BaseModel):
    """An independently written story about the same event, in the best locale for the request."""

    id: int = Field(description="Story id; fetch it with `GET /v1/stories/{id}`.", examples=[4012])
    title: str = Field(description="Title in `locale`.", examples=["Bitcoin ETF inflows hit record"])
    url: str | None = Field(
        description="Link to that member.", examples=["https://www.coindesk.com/markets/x"]
    )
    locale: str = Field(description="Locale the title and url are in.", examples=["en"])


class DisclaimerRef(BaseModel):
    """The disclaimer to show under the entry (chosen by the outlet's policy and the served locale)."""

    text: str = Field(
        description="Text to show as is.", examples=["Third-party content, republished for information only."]
    )
    version: str = Field(
        description="Version of the text: the editors' version number, or `seed-N` for the bundled text.",
        examples=["3", "seed-1"],
    )
    locale: str = Field(description="Locale of the text.", examples=["en"])


class FeedEntry(BaseModel):
    """One story, served in one locale."""

    id: int = Field(description="Story id (the id `stories export` prints).", examples=[4011])
    title: str = Field(description="Title in `locale_served`.", examples=["Bitcoin passa os 100 mil dólares"])
    summary: str = Field(
        description="Summary as sanitized HTML (safe to render: no scripts, styles or event handlers).",
        examples=["<p>O preço do <b>BTC</b> …</p>"],
    )
    summary_text: str = Field(
        description="Summary as plain text, for list cells.", examples=["O preço do BTC …"]
    )
    url: str | None = Field(
        description="Link to the served member.", examples=["https://www.gate.com/pt/news/1"]
    )
    outlet: OutletRef = Field(description="Publisher of the served member.")
    published_at: datetime = Field(
        description="When the story first appeared (ISO 8601, UTC); the feed is sorted by it, newest first.",
        examples=["2026-11-25T09:30:00Z"],
    )
    image: str | None = Field(description="Image URL, if any member has one.", examples=[None])
    tickers: list[str] = Field(description="Tickers mentioned by any member.", examples=[["BTC", "ETH"]])
    locale_served: str = Field(
        description="Locale of `title`/`summary`; differs from the requested one when a fallback was used.",
        examples=["pt-BR"],
    )
    converted: str | None = Field(
        default=None,
        description="OpenCC conversion applied to a Chinese member (`s2twp`: zh-CN text shown to a "
        "zh-TW reader in Traditional script; `t2s`: the reverse). Null when the text is as published.",
        examples=[None, "s2twp"],
    )
    pinned: bool = Field(
        default=False,
        description="An editor pinned the story on top of this locale's feed (first page only; it is then left out of later pages).",
    )
    untranslated: bool = Field(
        default=False,
        description="No version of the story is in the requested locale or its fallback chain: it is "
        "served in its original's locale (only with `untranslated=include`, or by id).",
    )
    original: OriginalRef = Field(description="The original article, to credit and link to.")
    translations: list[Translation] = Field(
        description="Other locales available, in the locales' canonical order."
    )
    related: list[RelatedRef] = Field(description="Related stories, most related first (at most 5).")
    disclaimer: DisclaimerRef | None = Field(
        description="The disclaimer of the outlet's policy in the requested locale, whatever locale the "
        "entry is served in (the next locale of the reader's chain only when none exists for it). "
        "Null when the outlet's policy needs none."
    )


class FeedPage(BaseModel):
    """One page of the localized feed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "id": 4011,
                            "title": "Bitcoin passa os 100 mil dólares",
                            "summary": "<p>O preço do <b>BTC</b> subiu…</p>",
                            "summary_text": "O preço do BTC subiu…",
                            "url": "https://www.gate.com/pt-br/news/1",
                            "outlet": {"id": "gate", "name": "Gate News"},
                            "published_at": "2026-11-25T09:30:00Z",
                            "image": None,
                            "tickers": ["BTC"],
                            "locale_served": "pt-BR",
                            "converted": None,
                            "pinned": False,
                            "untranslated": False,
                            "original": {
                                "outlet": {"id": "blocktempo", "name": "BlockTempo"},
                                "url": "https://www.blocktempo.com/x/",
                                "locale": "zh-TW",
                            },
                            "translations": [
                                {"locale": "en", "url": "https://www.gate.com/en/news/1"},
                                {"locale": "zh-TW", "url": "https://www.blocktempo.com/x/"},
                            ],
                            "related": [
                                {"id": 4012, "title": "ETF de BTC…", "url": "https://…", "locale": "pt-BR"}
                            ],
                            "disclaimer": {
                                "text": "Conteúdo de terceiros…",
                                "version": "seed-1",
                                "locale": "pt-BR",
                            },
                        }
                    ],
                    "next_cursor": "AAYkP1Zq4gAAAAAAAA-rS2Vb3m1cQx2s",
                    "locale_requested": "pt-PT",
                }
            ]
        }
    )

    items: list[FeedEntry] = Field(description="Stories, newest first; at most `limit`.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page. Opaque and signed.",
    )
    locale_requested: str = Field(
        description="The locale the feed was built for (from `locale`, else Accept-Language).",
        examples=["pt-PT"],
    )


class StoryMember(BaseModel):
    """One version of the story (the original, a translation or a syndicated copy)."""

    id: int = Field(description="Item id.", examples=[88120])
    locale: str = Field(description="Locale the member is written in.", examples=["pt-PT"])
    url: str | None = Field(description="Link to the member.", examples=["https://www.gate.com/pt/news/1"])
    title: str = Field(description="Title as published.", examples=["Bitcoin ultrapassa os 100 mil dólares"])
    outlet: OutletRef = Field(description="Publisher of the member.")
    published_at: datetime = Field(
        description="When the member was published (UTC).", examples=["2026-11-25T09:42:00Z"]
    )
    is_original: bool = Field(description="True for the canonical member.")


class StoryDetail(FeedEntry):
    """One story in the requested locale, with every member."""

    locale_requested: str = Field(description="The locale the story was rendered for.", examples=["pt-PT"])
    canonical: OriginalRef = Field(description="The original member (same as `original`).")
    members: list[StoryMember] = Field(description="Every member, original first, then by publication time.")


class FeedChangeRef(BaseModel):
    """A story to refresh (`upsert`: fetch `/v1/stories/{id}`) or to drop from the local copy."""

    id: int = Field(description="Story id.", examples=[4011])
    change: Literal["upsert", "removed"] = Field(
        description="`upsert`: (re)fetch the story; `removed`: drop it."
    )


class ChangesPage(BaseModel):
    """Stories changed since the token; call again with `next_since`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "changes": [{"id": 4011, "change": "upsert"}, {"id": 3990, "change": "removed"}],
                    "next_since": "AAAAAAAAAHsGdu8cKq9bO0pW2Q",
                    "has_more": False,
                }
            ]
        }
    )

    changes: list[FeedChangeRef] = Field(description="One line per story, its latest state.")
    next_since: str = Field(description="Token to pass as `since` next time. Opaque and signed.")
    has_more: bool = Field(description="More changes are waiting: call again at once with `next_since`.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable code.", examples=["unknown_locale"])
    message: str = Field(description="What went wrong, for a developer.", examples=["unknown locale 'pt'"])


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    error: ErrorDetail = Field(description="What failed.")


class Health(BaseModel):
    status: Literal["ok"] = Field(default="ok", description="Always `ok` when the process answers.")


class Readiness(BaseModel):
    status: Literal["ready"] = Field(default="ready", description="The API can serve requests.")
    revision: str | None = Field(description="Migration revision of the database.", examples=["0003"])

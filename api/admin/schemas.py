"""Request and response bodies of the admin API (documented in ``/docs``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """A NUL character cannot be stored (PostgreSQL text refuses it): 422, not 500."""
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class MemberUrl(Body):
    url: str = Field(max_length=2000, description="A member's URL, as in the story's `members`.")


class MergeBody(Body):
    story_id: int = Field(ge=1, le=2**31 - 1, description="The story whose members join this one.")


class MoveBody(Body):
    url: str = Field(max_length=2000, description="The member to move.")
    story_id: int = Field(ge=1, le=2**31 - 1, description="The story it moves to.")


class PinBody(Body):
    until: datetime | None = Field(
        default=None, description="End of the pin (with a time zone); none: until unpinned."
    )
    locale: str | None = Field(default=None, description="Only this locale's feed; none: every locale.")


class TitleBody(Body):
    locale: str = Field(description="The served locale the title is for.")
    title: str = Field(max_length=500, description="The new title; empty drops the edit.")


class KeyBody(Body):
    role: Literal["reader", "editor", "admin"] = Field(description="What the key may do.")
    name: str | None = Field(
        default=None, max_length=100, description="Who holds it (shown in the audit log)."
    )
    locale: str = Field(
        default="en",
        max_length=20,
        description="The reader's locale: what the Google Reader API (`/greader`) serves.",
    )


class SourceBody(Body):
    url: str = Field(max_length=2000, description="The feed URL (http or https).")
    outlet: str = Field(max_length=64, description="Outlet id (a catalogue outlet, or a new one).")
    locale: str = Field(max_length=8, description="The feed's locale.")
    title: str | None = Field(default=None, max_length=500, description="A display title.")


class SourceUpdate(Body):
    url: str | None = Field(default=None, max_length=2000, description="New feed URL.")
    outlet: str | None = Field(default=None, max_length=64, description="New outlet id.")
    locale: str | None = Field(default=None, max_length=8, description="New locale.")
    title: str | None = Field(default=None, max_length=500, description="New display title.")
    enabled: bool | None = Field(default=None, description="Poll it (true) or not (false).")


class CatalogueBody(Body):
    outlet: str | None = Field(default=None, max_length=64, description="Only this catalogue outlet.")
    locale: str | None = Field(default=None, max_length=8, description="Only feeds of this locale.")


class DisclaimerBody(Body):
    policy: str = Field(max_length=32, description="Disclaimer policy (`third-party`, `sponsored` …).")
    locale: str = Field(max_length=8, description="Locale of the text.")
    text: str = Field(max_length=5000, description="The text, shown as is; empty means no disclaimer.")


class VerdictBody(Body):
    verdict: Literal["confirm", "correct"] = Field(description="The machine was right, or fix it.")
    story_id: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="With `correct`: move the item to this story (none: split it off).",
    )


class Page(BaseModel):
    items: list[dict[str, Any]] = Field(description="Newest first.")
    next: int | None = Field(description="Pass as `before` for the next page; null at the end.")


class Done(BaseModel):
    ok: bool = Field(default=True, description="The action was done.")
    story_id: int | None = Field(default=None, description="The story the action leaves the member in.")
    detail: dict[str, Any] | None = Field(default=None, description="That story as editors see it.")

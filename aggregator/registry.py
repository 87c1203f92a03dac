"""Sources and outlets in the database: add (one transaction for a whole batch), list, export."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from aggregator.db import session_scope
from aggregator.models import Outlet, Source
from core.errors import CatalogueError
from core.locales import LOCALES
from sources.opml import SourceSpec


@dataclass(frozen=True)
class AddReport:
    added: int
    existing: int


def check_spec(spec: SourceSpec) -> None:
    """One-line CatalogueError for a source that cannot be polled."""
    parts = urlsplit(spec.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CatalogueError(f"{spec.url}: not an http(s) URL")
    if spec.locale not in LOCALES:
        raise CatalogueError(f"{spec.url}: unknown locale {spec.locale!r} (one of {', '.join(LOCALES)})")
    if not spec.outlet or len(spec.outlet) > 64:
        raise CatalogueError(f"{spec.url}: outlet id must be 1-64 characters")


def ensure_outlet(session: Session, outlet_id: str) -> None:
    if session.get(Outlet, outlet_id) is not None:
        return
    from sources.catalogue import load_catalogue

    known = load_catalogue().get(outlet_id)
    if known is not None:
        session.add(
            Outlet(
                id=outlet_id,
                name=known.name,
                homepage=known.homepage,
                disclaimer_policy=known.disclaimer_policy,
            )
        )
    else:
        session.add(Outlet(id=outlet_id, name=outlet_id, disclaimer_policy="third-party"))
    session.flush()


def add_sources(engine: sa.Engine, specs: Sequence[SourceSpec]) -> AddReport:
    """Add sources all-or-nothing: every spec is checked before anything is written."""
    for spec in specs:
        check_spec(spec)
    with session_scope(engine) as session:
        stored = set(
            session.exec(select(Source.url).where(col(Source.url).in_({s.url for s in specs}))).all()
        )
        fresh: dict[str, SourceSpec] = {}
        for spec in specs:
            if spec.url not in stored:
                fresh.setdefault(spec.url, spec)
        for spec in fresh.values():
            ensure_outlet(session, spec.outlet)
            session.add(Source(url=spec.url, outlet_id=spec.outlet, locale=spec.locale, title=spec.title))
    return AddReport(added=len(fresh), existing=len(specs) - len(fresh))


def list_sources(engine: sa.Engine) -> list[Source]:
    with session_scope(engine) as session:
        return list(session.exec(select(Source).order_by(Source.outlet_id, Source.locale, Source.id)).all())  # type: ignore[arg-type]


def source_specs(engine: sa.Engine) -> list[SourceSpec]:
    return [
        SourceSpec(url=s.url, outlet=s.outlet_id, locale=s.locale, title=s.title)
        for s in list_sources(engine)
    ]

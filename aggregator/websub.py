"""WebSub publishing: the URLs of babelwire's own feeds, and the ping that tells a hub they changed.

The re-exported feeds (``/v1/feed.rss``, ``.atom``, ``.json``; see ``api/export``) name each
per-locale feed by one URL, built here by ``feed_url`` for both sides: the API writes it as the
feed's ``rel="self"`` link (the WebSub topic) and the poller pings the hub with the same URLs
after a round that created stories. A hub that cannot be reached costs a log line, never a round.

The ping is the de facto publish request hubs accept (PubSubHubbub 0.4):
``POST hub`` with ``hub.mode=publish`` and one ``hub.url`` per topic, form-encoded.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import httpx

from aggregator import LOCALES
from aggregator.settings import Settings

log = logging.getLogger("babelwire.websub")

FORMATS: tuple[str, ...] = ("rss", "atom", "json")
"""The re-export formats, as the suffix of their route (``/v1/feed.<format>``)."""
PING_TIMEOUT_S = 10.0


def feed_url(base: str, fmt: str, locale: str, **filters: str | None) -> str:
    """``{base}/v1/feed.{fmt}?locale=…`` with the filters that are set, in a fixed order: the one
    spelling of a feed's URL (self link, WebSub topic, OPML ``xmlUrl``)."""
    query = [("locale", locale)] + [(k, v) for k, v in filters.items() if v]
    return f"{base.rstrip('/')}/v1/feed.{fmt}?{urlencode(query)}"


def public_base(settings: Settings) -> str:
    """The public URL of the API: ``BABELWIRE_PUBLIC_URL``, else where ``serve`` listens."""
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def topics(base: str) -> list[str]:
    """Every unfiltered per-locale feed, in every format."""
    return [feed_url(base, fmt, locale) for locale in LOCALES for fmt in FORMATS]


async def announce(settings: Settings, client: httpx.AsyncClient | None = None) -> bool:
    """Ping ``BABELWIRE_WEBSUB_HUB`` that every topic changed; True when the hub accepted (2xx).

    No hub configured: nothing is sent (False). Failures are logged, never raised."""
    if not settings.websub_hub:
        return False
    form = [("hub.mode", "publish")] + [("hub.url", t) for t in topics(public_base(settings))]
    own = client is None
    http = client or httpx.AsyncClient(timeout=PING_TIMEOUT_S, headers={"User-Agent": settings.user_agent})
    try:
        response = await http.post(
            settings.websub_hub,
            content=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    except httpx.HTTPError as exc:
        log.warning("websub: hub %s unreachable: %s", settings.websub_hub, type(exc).__name__)
        return False
    finally:
        if own:
            await http.aclose()
    if not response.is_success:
        log.warning("websub: hub %s answered %d", settings.websub_hub, response.status_code)
        return False
    return True

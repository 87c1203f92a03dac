"""Small multilingual feeds for the multi-process tests: sources come in threes (en original, es and
pt-BR translations that name it in ``<source url>``), so stories have members in three locales."""

from __future__ import annotations

from xml.sax.saxutils import escape

LOCALES = ("en", "es", "pt-BR")
TITLES = {
    "en": "Exchange {g} lists token {k} after a {m} million dollar funding round",
    "es": "El exchange {g} lista el token {k} tras una ronda de {m} millones de dólares",
    "pt-BR": "Exchange {g} lista o token {k} após rodada de {m} milhões de dólares",
}
SUMMARIES = {
    "en": "Exchange {g} said on Monday that token {k} trades from today; the round raised ${m} million.",
    "es": "El exchange {g} dijo el lunes que el token {k} cotiza desde hoy; la ronda recaudó {m} millones de dólares.",
    "pt-BR": "A exchange {g} disse na segunda que o token {k} é negociado a partir de hoje; a rodada levantou US$ {m} milhões.",
}
ITEMS_PER_FEED = 2


def locale_of(n: int) -> str:
    return LOCALES[n % 3]


def path_of(n: int) -> str:
    return f"/scale/{n}.xml"


def original_link(g: int, k: int) -> str:
    return f"https://news.example/en/{g}/{k}"


def feed(n: int) -> bytes:
    """Source ``n``'s feed: ``ITEMS_PER_FEED`` items of article group ``n // 3`` in its locale."""
    g, locale = n // 3, locale_of(n)
    items = []
    for k in range(ITEMS_PER_FEED):
        m = 10 + (g * 7 + k * 3) % 90
        link = original_link(g, k) if locale == "en" else f"https://news.example/{locale}/{g}/{k}"
        source = "" if locale == "en" else f'<source url="{original_link(g, k)}">News EN</source>'
        day, hour = 1 + g % 27, 1 + k * 5 + (n % 3)
        items.append(
            f"<item><title>{escape(TITLES[locale].format(g=g, k=k, m=m))}</title><link>{link}</link>"
            f"<guid>{link}</guid><description>{escape(SUMMARIES[locale].format(g=g, k=k, m=m))}</description>"
            f"<pubDate>Mon, {day:02d} Nov 2026 {hour:02d}:00:00 GMT</pubDate>{source}</item>"
        )
    body = "".join(items)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>feed {n}</title>'
        f"<link>https://news.example/{locale}/</link><language>{locale}</language>{body}</channel></rss>"
    ).encode()

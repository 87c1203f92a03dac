"""The thirteen locales (a stand-in until the locale registry lands here; it imports nothing)."""

LOCALES: tuple[str, ...] = (
    "zh-CN",
    "en",
    "vi",
    "zh-TW",
    "es",
    "ru",
    "fr",
    "pt-PT",
    "id",
    "ja",
    "ar",
    "uk",
    "pt-BR",
)
"""The thirteen locales, in the order a Gate news page offers them."""

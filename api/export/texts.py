"""The re-exported feeds' own words, per locale: feed title and description, the label of the link
to the original article, and the locale's name (the OPML folder)."""

from __future__ import annotations

TITLE: dict[str, str] = {
    "zh-CN": "babelwire 加密货币新闻",
    "en": "babelwire crypto news",
    "vi": "babelwire – Tin tức tiền mã hóa",
    "zh-TW": "babelwire 加密貨幣新聞",
    "es": "babelwire – Noticias cripto",
    "ru": "babelwire – Криптоновости",
    "fr": "babelwire – Actualités crypto",
    "pt-PT": "babelwire – Notícias de cripto",
    "id": "babelwire – Berita kripto",
    "ja": "babelwire 暗号資産ニュース",
    "ar": "babelwire – أخبار العملات المشفرة",
    "uk": "babelwire – Криптоновини",
    "pt-BR": "babelwire – Notícias de cripto",
}

DESCRIPTION: dict[str, str] = {
    "zh-CN": "来自全球媒体的加密货币新闻，每篇报道只出现一次。",
    "en": "Crypto news from outlets worldwide, each story once.",
    "vi": "Tin tức tiền mã hóa từ các trang tin trên thế giới, mỗi câu chuyện một lần.",
    "zh-TW": "來自全球媒體的加密貨幣新聞，每篇報導只出現一次。",
    "es": "Noticias cripto de medios de todo el mundo, cada historia una sola vez.",
    "ru": "Криптоновости из изданий со всего мира, каждая история один раз.",
    "fr": "Actualités crypto des médias du monde entier, chaque article une seule fois.",
    "pt-PT": "Notícias de cripto de meios de todo o mundo, cada história uma só vez.",
    "id": "Berita kripto dari media di seluruh dunia, setiap cerita satu kali.",
    "ja": "世界のメディアの暗号資産ニュース。各記事は一度だけ掲載されます。",
    "ar": "أخبار العملات المشفرة من وسائل إعلام حول العالم، كل قصة مرة واحدة.",
    "uk": "Криптоновини з видань з усього світу, кожна історія один раз.",
    "pt-BR": "Notícias de cripto de veículos do mundo todo, cada matéria uma única vez.",
}

ORIGINAL: dict[str, str] = {
    "zh-CN": "原文",
    "en": "Original",
    "vi": "Bài gốc",
    "zh-TW": "原文",
    "es": "Original",
    "ru": "Оригинал",
    "fr": "Article original",
    "pt-PT": "Original",
    "id": "Artikel asli",
    "ja": "原文",
    "ar": "المقال الأصلي",
    "uk": "Оригінал",
    "pt-BR": "Original",
}
"""Label of the link to the original article, before the outlet's name."""

LANGUAGE_NAME: dict[str, str] = {
    "zh-CN": "简体中文",
    "en": "English",
    "vi": "Tiếng Việt",
    "zh-TW": "繁體中文",
    "es": "Español",
    "ru": "Русский",
    "fr": "Français (Afrique)",
    "pt-PT": "Português (Portugal)",
    "id": "Bahasa Indonesia",
    "ja": "日本語",
    "ar": "العربية",
    "uk": "Українська",
    "pt-BR": "Português (Brasil)",
}

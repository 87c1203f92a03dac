"""Ingest bench feeds: multilingual RSS 2.0 documents assembled at random from small word lists."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from core.locales import LOCALES  # noqa: E402

# Small hand-written vocabularies; text is assembled from them at random, so no article is copied.
WORDS: dict[str, str] = {
    "zh-CN": "比特币 以太坊 市场 价格 交易所 投资者 监管 机构 上涨 下跌 资金 链上 数据 分析师 报告 美元 本周 今日 "
    "表示 预计 区块链 钱包 稳定币 基金 流入 流出 期货 现货 矿工 算力 减半 合约 持仓 清算 的 了 在 和",
    "zh-TW": "比特幣 以太坊 市場 價格 交易所 投資者 監管 機構 上漲 下跌 資金 鏈上 數據 分析師 報告 美元 本週 今日 "
    "表示 預計 區塊鏈 錢包 穩定幣 基金 流入 流出 期貨 現貨 礦工 算力 減半 合約 持倉 清算 的 了 在 與",
    "ja": "ビットコイン イーサリアム 市場 価格 取引所 投資家 規制 機関 上昇 下落 資金 オンチェーン データ アナリスト "
    "報告 ドル 今週 本日 発表 予想 ブロックチェーン ウォレット ステーブルコイン ファンド 流入 先物 現物 が は を に で",
    "en": "bitcoin ether market price exchange investors regulator funds rally slide capital on-chain data "
    "analysts report dollars this week today said expects blockchain wallet stablecoin inflows outflows "
    "futures spot miners hashrate halving contract open interest liquidations the a of and to in",
    "vi": "bitcoin thị trường giá sàn giao dịch nhà đầu tư cơ quan quản lý quỹ tăng giảm vốn dữ liệu chuỗi khối "
    "nhà phân tích báo cáo đô la tuần này hôm nay cho biết dự kiến ví đồng ổn định dòng tiền hợp đồng "
    "tương lai thợ đào và của trong với",
    "es": "bitcoin mercado precio exchange inversores regulador fondos subida caída capital datos analistas "
    "informe dólares semana hoy afirmó espera cadena de bloques billetera entradas salidas futuros contado "
    "mineros halving contratos liquidaciones el la de y en los",
    "ru": "биткоин эфир рынок цена биржа инвесторы регулятор фонды рост падение капитал данные аналитики отчёт "
    "долларов неделе сегодня заявил ожидает блокчейн кошелёк стейблкоин приток отток фьючерсы спот майнеры "
    "халвинг контракты ликвидации и в на по",
    "fr": "bitcoin marché prix plateforme investisseurs régulateur fonds hausse baisse capitaux données "
    "analystes rapport dollars semaine aujourd'hui a déclaré prévoit chaîne de blocs portefeuille entrées "
    "sorties contrats à terme mineurs liquidations le la de et en les",
    "pt-PT": "bitcoin mercado preço corretora investidores regulador fundos subida queda capital dados analistas "
    "relatório dólares semana hoje afirmou prevê carteira entradas saídas futuros mineiros contratos "
    "liquidações o a de e em os",
    "id": "bitcoin pasar harga bursa investor regulator dana kenaikan penurunan modal data analis laporan "
    "dolar minggu ini hari ini mengatakan memperkirakan dompet arus masuk arus keluar kontrak berjangka "
    "penambang likuidasi dan di yang untuk",
    "ar": "بيتكوين إيثريوم السوق السعر منصة المستثمرين الجهة التنظيمية صناديق ارتفاع انخفاض رأس المال بيانات "
    "المحللين تقرير دولار الأسبوع اليوم قال يتوقع محفظة تدفقات العقود الآجلة المعدنين التصفية في من على و",
    "uk": "біткоїн ефір ринок ціна біржа інвестори регулятор фонди зростання падіння капітал дані аналітики звіт "
    "доларів тижня сьогодні заявив очікує блокчейн гаманець стейблкоїн приплив відтік ф'ючерси майнери "
    "ліквідації і в на за",
    "pt-BR": "bitcoin mercado preço corretora investidores regulador fundos alta queda capital dados analistas "
    "relatório dólares semana hoje afirmou prevê carteira entradas saídas futuros mineradores contratos "
    "liquidações o a de e em os",
}
UNSPACED = frozenset({"zh-CN", "zh-TW", "ja"})
FULL_STOP = {"zh-CN": "。", "zh-TW": "。", "ja": "。", "ar": ".", "uk": "."}
TICKERS = ("BTC", "ETH", "SOL", "XRP", "BNB", "DOGE", "TON", "ADA", "AVAX", "LINK", "USDT", "USDC")
AUTHORS = ("Lin Wei", "Ana Souza", "Minh Tran", "Olena K.", "Karim H.", "Yuki S.", "Jean D.", "Rina P.")
ITEM_BYTES = 2750
"""Target UTF-8 size of one ``<item>``: 50 of them make a feed of about 140 KB."""


# --- feeds -------------------------------------------------------------------------------------


def _sentence(rng: random.Random, locale: str, anchors: Sequence[str], n_words: int) -> str:
    words = WORDS[locale].split()
    picked = [rng.choice(words) for _ in range(n_words)]
    for anchor in anchors:
        picked.insert(rng.randrange(len(picked) + 1), anchor)
    if locale in UNSPACED:
        return "".join(picked) + FULL_STOP.get(locale, "。")
    text = " ".join(picked)
    return text[:1].upper() + text[1:] + FULL_STOP.get(locale, ".")


def feed_item(seed: int, feed_no: int, item_no: int, locale: str, base: datetime) -> str:
    """One ``<item>``: the same article (ID, tickers, amounts, image) in every locale of a group."""
    group = feed_no // len(LOCALES)
    article = group * 1000 + item_no
    anchor_rng = random.Random(f"{seed}:{group}:{item_no}")
    rng = random.Random(f"{seed}:{feed_no}:{item_no}")
    tickers = anchor_rng.sample(TICKERS, 2)
    amount = f"{anchor_rng.randint(2, 950)}.{anchor_rng.randint(0, 9)}"
    pct = f"{anchor_rng.randint(1, 40)}%"
    image = f"https://img.news{group}.example.com/{article}/cover-{anchor_rng.randrange(10**6)}.jpg"
    host = f"https://news{group}.example.com"
    lang = locale.lower()
    link = f"{host}/{lang}/news/{article}?utm_source=rss&utm_medium=feed&utm_campaign=daily-{item_no % 7}"
    published = base - timedelta(minutes=item_no * 37 - LOCALES.index(locale) * 4)
    title = _sentence(rng, locale, [tickers[0], amount], rng.randint(6, 11)).rstrip("。.")

    parts = [f'<p><img src="{image}" alt="{tickers[0]}" width="800" height="450"></p>']
    while len("".join(parts).encode()) < ITEM_BYTES - 700:
        sentences = [
            _sentence(rng, locale, rng.sample([*tickers, amount, pct], rng.randint(0, 2)), rng.randint(8, 18))
            for _ in range(rng.randint(2, 4))
        ]
        related = rng.randrange(1, 999)
        sentences.append(
            f'<a href="{host}/{lang}/news/{group * 1000 + related}?utm_source=rss&amp;utm_medium=feed'
            f'&amp;fbclid=x{related}">{escape(_sentence(rng, locale, [], 4))}</a>'
        )
        if rng.random() < 0.3:
            sentences.append(f'<a href="/{lang}/tag/{tickers[1].lower()}">#{tickers[1]}</a>')
        parts.append("<p>" + " ".join(sentences) + "</p>")
    description = "".join(parts)
    return (
        "<item>"
        f"<title>{escape(title)}</title>"
        f"<link>{escape(link)}</link>"
        f'<guid isPermaLink="false">news{group}-{lang}-{article}</guid>'
        f"<pubDate>{format_datetime(published)}</pubDate>"
        f"<dc:creator>{rng.choice(AUTHORS)}</dc:creator>"
        + "".join(f"<category>{t}</category>" for t in tickers)
        + f"<description><![CDATA[{description}]]></description>"
        f'<media:content url="{image}" medium="image" type="image/jpeg"/>'
        "</item>\n"
    )


def feed_document(seed: int, feed_no: int, items: int, base: datetime) -> bytes:
    locale = LOCALES[feed_no % len(LOCALES)]
    group = feed_no // len(LOCALES)
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:media="http://search.yahoo.com/mrss/">\n<channel>'
        f"<title>Bench News {group} ({locale})</title>"
        f"<link>https://news{group}.example.com/{locale.lower()}/</link>"
        f"<description>Synthetic feed {feed_no} for the ingest benchmark</description>"
        f"<language>{locale}</language>"
        f"<lastBuildDate>{format_datetime(base)}</lastBuildDate>\n"
    )
    body = "".join(feed_item(seed, feed_no, i, locale, base) for i in range(items))
    return (head + body + "</channel></rss>\n").encode()


def write_feeds(directory: Path, feeds: int, items: int, seed: int = 7) -> list[Path]:
    """Write the feeds as ``directory/N.xml``; deterministic for a seed."""
    base = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
    paths = []
    for n in range(feeds):
        path = directory / f"{n}.xml"
        path.write_bytes(feed_document(seed, n, items, base))
        paths.append(path)
    return paths

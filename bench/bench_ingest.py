"""Ingest benchmark: our end-to-end items/s against feedparser parse-only items/s, same feeds, same run.

Generates ``--feeds`` RSS 2.0 documents of ``--items`` entries each (about 140 KB per feed:
multilingual titles and HTML descriptions across the thirteen locales, links with ``utm_``
parameters, images, relative links), serves them from a threaded ``http.server`` on 127.0.0.1 in
a separate process (so serving does not take the GIL from the measured code), with ETag and
``If-None-Match`` → 304, then measures in one run:

* feedparser on the bodies, with its defaults, and with ``sanitize_html=False,
  resolve_relative_uris=False`` (the baselines, parse only: no fetch, no store);
* our poll round in-process (``poll_round``: fetch over loopback → parse → normalize → decide →
  store, no dedupe) on a fresh SQLite file, in a child process so its peak RSS is its own;
* ``python main.py poll --once --quiet`` end to end (process start, the round, dedupe), and then
  ``poll --once --all --quiet`` with nothing changed (every feed answers 304);
* with ``--postgres``, the in-process round and the CLI again on a throwaway PostgreSQL.

Every speed is reported as a ratio to a baseline measured in the same run, with absolute numbers
beside it for context: machines are noisy, so nothing here asserts a timing. The markdown table
goes to stdout, progress to stderr. ``--profile`` adds a serial per-stage breakdown and the
hottest functions (cProfile) of parse + normalize.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

P = ParamSpec("P")
T = TypeVar("T")

from core.locales import LOCALES  # noqa: E402

READER_ITEMS_S = 1300.0
"""`reader`'s ingest rate from TARGETS.md (published there, not measured here)."""
READER_FEEDPARSER_ITEMS_S = 1900.0
"""feedparser-defaults rate measured next to `reader` in TARGETS.md; scales reader to this machine."""
READER_SECOND_POLL_S = 0.5
TARGET_RATIO = 0.5

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


# --- loopback server (runs in its own process) ----------------------------------------------------


def serve(directory: Path) -> None:
    """Serve ``directory/*.xml`` at ``/feeds/N.xml`` until killed; prints the port on stdout first."""
    bodies = {f"/feeds/{p.name}": p.read_bytes() for p in directory.glob("*.xml")}
    tags = {path: '"' + hashlib.sha256(body).hexdigest()[:20] + '"' for path, body in bodies.items()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = bodies.get(self.path)
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            tag = tags[self.path]
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.send_header("ETag", tag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("ETag", tag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


@contextlib.contextmanager
def feed_server(directory: Path) -> Iterator[str]:
    """The loopback server in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "_serve", str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError("feed server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- baselines ---------------------------------------------------------------------------------


@dataclass
class Rate:
    items: int
    seconds: float
    peak_rss_mb: float | None = None
    cpu_s: float | None = None

    @property
    def per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0


def feedparser_rate(bodies: Sequence[bytes], **options: bool) -> Rate:
    import feedparser

    items = 0
    cpu_before = _cpu_self()
    started = time.perf_counter()
    for body in bodies:
        items += len(feedparser.parse(io.BytesIO(body), **options).entries)
    return Rate(items, time.perf_counter() - started, cpu_s=_cpu_self() - cpu_before)


# --- ours ---------------------------------------------------------------------------------------


def bench_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BABELWIRE_")}
    env.update(BABELWIRE_DATABASE_URL=database_url, BABELWIRE_ALLOW_PRIVATE_FEEDS="1")
    return env


def prepare_database(database_url: str, base_url: str, feeds: int) -> None:
    """Migrate a fresh database and register the feeds as sources (not timed)."""
    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.registry import add_sources
    from aggregator.settings import load_settings
    from sources.opml import SourceSpec

    engine = make_engine(load_settings(database_url=database_url))
    try:
        upgrade(engine)
        specs = [
            SourceSpec(
                url=f"{base_url}/feeds/{n}.xml",
                outlet=f"bench{n // len(LOCALES)}",
                locale=LOCALES[n % len(LOCALES)],
                title=None,
            )
            for n in range(feeds)
        ]
        add_sources(engine, specs)
    finally:
        engine.dispose()


def round_child(database_url: str, dedupe: bool) -> None:
    """In a fresh process: time one ``poll_round``, then (untimed in the round) ``run_dedupe``; print JSON."""
    from aggregator.db import make_engine
    from aggregator.poll import poll_round
    from aggregator.settings import load_settings

    settings = load_settings(database_url=database_url, allow_private_feeds=True)
    engine = make_engine(settings)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = _cpu_self()
    started = time.perf_counter()
    report = asyncio.run(poll_round(engine, settings))
    seconds = time.perf_counter() - started
    cpu = _cpu_self() - cpu_before
    round_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from aggregator.dedupe.run import run_dedupe

    started = time.perf_counter()
    if dedupe:
        run_dedupe(engine)
    dedupe_s = time.perf_counter() - started if dedupe else None
    engine.dispose()
    first_error = next((o.error for o in report.outcomes if o.error), None)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_s": cpu,
                "inserted": report.inserted,
                "polled": report.polled,
                "errors": report.errors,
                "first_error": first_error,
                "rss_before_mb": rss_before / 1024,
                "peak_rss_mb": round_peak / 1024,
                "dedupe_s": dedupe_s,
                "dedupe_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One child process: wall time, its own rusage (wait4), its output."""

    code: int
    seconds: float
    peak_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str


def run_child(cmd: Sequence[str], env: dict[str, str]) -> Run:
    """Run ``cmd`` and reap it with ``wait4`` so the peak RSS is this child's alone.

    ``RUSAGE_CHILDREN`` is the maximum over every child reaped so far (the earlier runs, the
    feed server), so it cannot tell one run from another.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            code=proc.returncode,
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss / 1024,
            cpu_s=usage.ru_utime + usage.ru_stime,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


SUMMARY = re.compile(
    r"polled (\d+) sources .*?: (\d+) new items, (\d+) updated, (\d+) not modified, (\d+) errors"
)


@dataclass
class PollSummary:
    polled: int
    inserted: int
    updated: int
    not_modified: int
    errors: int


def poll_summary(run: Run) -> PollSummary:
    found = SUMMARY.search(run.stdout)
    if run.code != 0 or found is None:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchFailure(f"`main.py poll` exited {run.code}: {tail}")
    return PollSummary(*(int(g) for g in found.groups()))


class BenchFailure(Exception):
    """The pipeline under test failed; the benchmark has no number to report."""


def in_process_round(database_url: str, dedupe: bool) -> tuple[Rate, dict[str, Any]]:
    cmd = [sys.executable, __file__, "_round", database_url, *(["--dedupe"] if dedupe else [])]
    run = run_child(cmd, bench_env(database_url))
    if run.code != 0:
        tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchFailure(f"in-process poll round failed: {tail}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    if result["inserted"] == 0:
        raise BenchFailure(f"in-process poll round stored nothing: {result['first_error']}")
    rate = Rate(result["inserted"], result["seconds"], result["peak_rss_mb"], result["cpu_s"])
    return rate, result


@dataclass
class CliResult:
    first: Rate
    first_summary: PollSummary
    second: Run
    second_summary: PollSummary


def cli_rounds(database_url: str) -> CliResult:
    env = bench_env(database_url)
    main = str(ROOT / "main.py")
    first = run_child([sys.executable, main, "poll", "--once", "--quiet"], env)
    first_summary = poll_summary(first)
    if first_summary.inserted == 0:
        raise BenchFailure("`main.py poll --once` stored nothing")
    second = run_child([sys.executable, main, "poll", "--once", "--all", "--quiet"], env)
    return CliResult(
        first=Rate(first_summary.inserted, first.seconds, first.peak_rss_mb, first.cpu_s),
        first_summary=first_summary,
        second=second,
        second_summary=poll_summary(second),
    )


# --- profile -----------------------------------------------------------------------------------


class InlineExecutor(ThreadPoolExecutor):
    """Runs submitted work at once in the calling thread, so cProfile sees every stage of the round."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:
            future.set_exception(e)
        return future


STAGES = (
    ("parse (aggregator/parse.py parse_feed)", "aggregator/parse.py", "parse_feed"),
    (
        "normalize (aggregator/normalize/entry.py normalize_entry)",
        "aggregator/normalize/entry.py",
        "normalize_entry",
    ),
    ("decide (aggregator/decide.py decide)", "aggregator/decide.py", "decide"),
    ("store (aggregator/poll.py _store, decide excluded)", "aggregator/poll.py", "_store"),
)


def profile_child(database_url: str, top: int = 15) -> None:
    """In a fresh process: one poll round under cProfile, single-threaded; prints a markdown note.

    The real round parses and stores in worker threads, which cProfile does not follow; here
    every executor runs its work inline, so the time of each stage and function is attributed
    (fetches still overlap while the loop waits on the network).
    """
    from aggregator.db import make_engine
    from aggregator.poll import poll_round
    from aggregator.settings import load_settings

    settings = load_settings(database_url=database_url, allow_private_feeds=True)
    engine = make_engine(settings)
    inline = InlineExecutor(max_workers=1)

    async def round_inline() -> int:
        asyncio.get_running_loop().set_default_executor(inline)
        report = await poll_round(engine, settings, executor=inline)
        return report.inserted

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    inserted = asyncio.run(round_inline())
    profiler.disable()
    wall = time.perf_counter() - started
    engine.dispose()

    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]

    def cumulative(path: str, name: str) -> float:
        return sum(v[3] for (file, _line, func), v in table.items() if file.endswith(path) and func == name)

    seconds = {label: cumulative(path, name) for label, path, name in STAGES}
    decide_s = seconds[STAGES[2][0]]
    seconds[STAGES[3][0]] -= decide_s
    rest = wall - sum(seconds.values())
    lines = [
        f"One poll round under cProfile, every stage inline in one thread: {inserted:,} items in {wall:.1f} s "
        "(the profiler slows Python code, so read the shares, not the seconds).",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    shares = [*seconds.items(), ("fetch over loopback + event loop + claim (the rest)", rest)]
    for label, value in shares:
        lines.append(f"| {label} | {value:.2f} | {100 * value / wall:.0f}% |")
    ranked = sorted(shares, key=lambda kv: kv[1], reverse=True)
    lines += [
        "",
        "Largest shares: "
        + ", ".join(f"{label.split(' (')[0]} {100 * value / wall:.0f}%" for label, value in ranked[:3])
        + ".",
    ]
    listing = io.StringIO()
    pstats.Stats(profiler, stream=listing).sort_stats("tottime").print_stats(top)
    paths = sysconfig.get_paths()
    hottest = [
        line.replace(paths["purelib"] + "/", "")
        .replace(paths["stdlib"] + "/", "")
        .replace(str(ROOT) + "/", "")
        for line in listing.getvalue().splitlines()
        if re.match(r"\s*[\d/]+\s+\d", line) or "ncalls" in line
    ]
    lines += ["", f"Hottest {top} functions by own time:", "", "```", *hottest, "```"]
    print("\n".join(lines))


def import_profile(env: dict[str, str], top: int = 8) -> str:
    """The heaviest top-level imports of ``main.py poll --once --all`` (``-X importtime``)."""
    cmd = [sys.executable, "-X", "importtime", str(ROOT / "main.py"), "poll", "--once", "--all", "--quiet"]
    run = run_child(cmd, env)
    top_level: list[tuple[float, str]] = []
    by_package: dict[str, float] = {}
    for line in run.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not found:
            continue
        seconds, name = int(found.group(1)) / 1e6, found.group(3)
        if len(found.group(2)) <= 1:
            top_level.append((seconds, name))
        package = name.split(".")[0]
        if package not in ("aggregator", "sources", "api"):
            by_package[package] = max(by_package.get(package, 0.0), seconds)
    top_level.sort(reverse=True)
    heavy = sorted(((s, n) for n, s in by_package.items()), reverse=True)
    return (
        f"Second poll (all 304) took {run.seconds:.2f} s with `-X importtime`; top-level imports add up to "
        f"{sum(s for s, _ in top_level):.2f} s of it: "
        + ", ".join(f"{name} {s:.2f} s" for s, name in top_level[:top])
        + ". Heaviest third-party packages, wherever imported: "
        + ", ".join(f"{name} {s:.2f} s" for s, name in heavy[:top])
        + "."
    )


def findings(rate: Rate, detail: dict[str, Any], cli: CliResult, fp_default: Rate, start: Run) -> list[str]:
    """The reading of the SQLite figures, in words, for the Profile note."""
    lines = []
    if rate.cpu_s:
        lines.append(
            f"- The round is CPU-bound on about one core: {rate.cpu_s:.0f} CPU s in {rate.seconds:.0f} s wall "
            f"({rate.cpu_s / rate.seconds:.2f} cores busy of {os.cpu_count()}); parse and normalize run in "
            "threads, so the GIL keeps the Python work on one core."
        )
        if fp_default.cpu_s:
            lines.append(
                f"- Per item, the round spends {rate.cpu_s / fp_default.cpu_s:.1f}× the CPU of feedparser with "
                "its defaults; the stage shares below say where."
            )
    if detail.get("dedupe_s"):
        share = 100 * detail["dedupe_s"] / cli.first.seconds
        lines.append(
            f"- `run_dedupe` of the same {rate.items:,} items took {detail['dedupe_s']:.0f} s in-process: "
            f"{share:.0f}% of the {cli.first.seconds:.0f} s wall of the whole CLI run"
            + (", so the end-to-end figure is mostly dedupe" if share > 50 else "")
            + f"; dedupe also sets the peak RSS ({detail['dedupe_peak_rss_mb']:.0f} MB against "
            f"{rate.peak_rss_mb or 0:.0f} MB for the round)."
        )
    lines.append(
        f"- Second poll with nothing changed: {cli.second.seconds:.1f} s, of which starting Python and "
        f"`main.py --help` alone is {start.seconds:.1f} s; the imports below account for most of the rest."
    )
    return lines


# --- report ------------------------------------------------------------------------------------


def fmt_rate(rate: Rate) -> str:
    return f"{rate.per_s:,.0f}"


def report(
    *,
    feeds: int,
    items: int,
    total_bytes: int,
    fp_default: Rate,
    fp_fast: Rate,
    ours: dict[str, Rate],
    cli: dict[str, CliResult],
    start_s: float,
    notes: list[str],
) -> str:
    avg_kb = total_bytes / feeds / 1024
    reader_here = READER_ITEMS_S / READER_FEEDPARSER_ITEMS_S * fp_default.per_s
    lines = [
        f"{feeds} RSS 2.0 feeds × {items} items = {feeds * items:,} items, {avg_kb:.0f} KB per feed on average "
        f"({total_bytes / 2**20:.1f} MB), thirteen locales, served over loopback by a separate process.",
        "",
        "| run | items | wall s | items/s | **÷ feedparser default** | CPU s | items per CPU s ÷ feedparser's "
        "| ÷ reader (1,300/s, quoted) | ÷ reader scaled to this machine | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, rate: Rate, baseline: bool = False) -> None:
        ratio = f"{rate.per_s / fp_default.per_s:.2f}"
        cpu = cpu_ratio = "—"
        if rate.cpu_s:
            cpu = f"{rate.cpu_s:.2f}"
            if fp_default.cpu_s:
                cpu_ratio = f"{(rate.items / rate.cpu_s) / (fp_default.items / fp_default.cpu_s):.2f}"
        if baseline:
            ratio += " (baseline)"
        elif name.startswith("ours"):
            ratio = f"**{ratio}**"
        rss = f"{rate.peak_rss_mb:.0f}" if rate.peak_rss_mb is not None else "—"
        lines.append(
            f"| {name} | {rate.items:,} | {rate.seconds:.2f} | {fmt_rate(rate)} | {ratio} | {cpu} | {cpu_ratio} "
            f"| {rate.per_s / READER_ITEMS_S:.2f} | {rate.per_s / reader_here:.2f} | {rss} |"
        )

    row("feedparser parse-only, defaults", fp_default, baseline=True)
    row("feedparser parse-only, sanitize_html=False, resolve_relative_uris=False", fp_fast)
    for db, rate in ours.items():
        row(f"ours, in-process `poll_round` (fetch→store, no dedupe), {db}", rate)
    for db, result in cli.items():
        row(
            f"ours, `main.py poll --once --quiet` end to end (process start + round + dedupe), {db}",
            result.first,
        )

    lines += [
        "",
        f"Targets: ours ÷ feedparser default ≥ {TARGET_RATIO} (issue); ≥ 1.0× reader now, ≥ 2× as the goal "
        '(TARGETS.md). "reader scaled" = 1,300 × (feedparser default here ÷ the 1,900 items/s measured next to '
        f"reader in TARGETS.md) = {reader_here:,.0f} items/s on this machine — an estimate, reader is not run here. "
        "Wall-clock ratios reward using both cores; the per-CPU-second ratio is steadier when other work shares "
        "the machine. The loopback server's CPU is not counted in ours.",
        "",
        "| second poll, nothing changed | feeds | 304s | wall s | ÷ reader ~0.5 s (quoted) | "
        "÷ process start alone | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for db, result in cli.items():
        s = result.second_summary
        lines.append(
            f"| `main.py poll --once --all --quiet`, {db} | {s.polled} | {s.not_modified} "
            f"| {result.second.seconds:.2f} | {result.second.seconds / READER_SECOND_POLL_S:.2f} "
            f"| {result.second.seconds / start_s:.2f} | {result.second.peak_rss_mb:.0f} |"
        )
    lines += [
        "",
        f"Process start alone (`main.py --help`): {start_s:.2f} s. Lower is better in this table; "
        "reader's 0.5 s is quoted from TARGETS.md (process start included), not measured here.",
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def log(message: str) -> None:
    print(f"[ingest] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_serve"]:
        serve(Path(argv[1]))
        return 0
    if argv[:1] == ["_round"]:
        round_child(argv[1], dedupe="--dedupe" in argv)
        return 0
    if argv[:1] == ["_profile"]:
        profile_child(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=200, help="number of feeds (default 200)")
    parser.add_argument("--items", type=int, default=50, help="items per feed (default 50)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 26 feeds × 50 items")
    parser.add_argument("--postgres", action="store_true", help="also run ours on a throwaway PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="add a per-stage breakdown and cProfile top")
    parser.add_argument("--keep", type=Path, help="write the feeds to this directory and keep them")
    args = parser.parse_args(argv)
    if args.quick:
        args.feeds = min(args.feeds, 26)

    tmp = Path(tempfile.mkdtemp(prefix="babelwire-bench-ingest-"))
    feed_dir = args.keep or tmp / "feeds"
    feed_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, tmp, feed_dir)
    except BenchFailure as e:
        print(f"bench_ingest: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path, feed_dir: Path) -> int:
    log(f"writing {args.feeds} feeds × {args.items} items to {feed_dir}")
    paths = write_feeds(feed_dir, args.feeds, args.items)
    bodies = [p.read_bytes() for p in paths]
    total_bytes = sum(len(b) for b in bodies)
    notes: list[str] = []

    log("feedparser baselines")
    fp_default = feedparser_rate(bodies)
    fp_fast = feedparser_rate(bodies, sanitize_html=False, resolve_relative_uris=False)
    expected = args.feeds * args.items
    if fp_default.items != expected:
        notes.append(f"feedparser read {fp_default.items} entries, {expected} were written")

    start = run_child([sys.executable, str(ROOT / "main.py"), "--help"], dict(os.environ))
    ours: dict[str, Rate] = {}
    details: dict[str, dict[str, Any]] = {}
    cli: dict[str, CliResult] = {}
    profile = ""
    with feed_server(feed_dir) as base_url:
        databases = [("SQLite", lambda name: f"sqlite:///{tmp / name}.sqlite")]
        pg = None
        if args.postgres:
            from tests.pgserver import PostgresServer

            log("starting a throwaway PostgreSQL")
            pg = PostgresServer()
            pg.start()
            server = pg
            databases.append(("PostgreSQL", lambda _name: server.create_database()))
        try:
            for label, new_url in databases:
                url = new_url("round")
                prepare_database(url, base_url, args.feeds)
                log(f"{label}: in-process poll round")
                ours[label], detail = in_process_round(url, dedupe=label == "SQLite")
                details[label] = detail
                if detail["errors"]:
                    notes.append(
                        f"{label} in-process round: {detail['errors']} feed errors, first: {detail['first_error']}"
                    )
                if ours[label].items != expected:
                    notes.append(f"{label} in-process round stored {ours[label].items} of {expected} items")
                note = (
                    f"{label} in-process round: RSS {detail['rss_before_mb']:.0f} MB after imports, "
                    f"{detail['peak_rss_mb']:.0f} MB at peak"
                )
                if detail["dedupe_s"]:
                    note += (
                        f"; `run_dedupe` afterwards in the same process took {detail['dedupe_s']:.1f} s "
                        f"({ours[label].items / detail['dedupe_s']:,.0f} items/s), "
                        f"peak RSS {detail['dedupe_peak_rss_mb']:.0f} MB"
                    )
                notes.append(note)

                url = new_url("cli")
                prepare_database(url, base_url, args.feeds)
                log(f"{label}: main.py poll --once, then again with nothing changed")
                cli[label] = cli_rounds(url)
                s = cli[label].first_summary
                if s.errors or s.inserted != expected:
                    notes.append(
                        f"{label} CLI round: {s.inserted} of {expected} items stored, {s.errors} feed errors"
                    )
                if cli[label].second_summary.not_modified != args.feeds:
                    notes.append(
                        f"{label} second poll: {cli[label].second_summary.not_modified} of {args.feeds} feeds "
                        "answered 304"
                    )
            log("feedparser defaults again (bracketing ours; the faster run is the baseline)")
            fp_again = feedparser_rate(bodies)
            notes.append(
                f"feedparser defaults measured before and after ours: {fp_default.per_s:,.0f} and "
                f"{fp_again.per_s:,.0f} items/s; the faster one is the baseline (the conservative choice)."
            )
            if fp_again.seconds < fp_default.seconds:
                fp_default = fp_again
            if args.profile:
                log("profiling one round (cProfile, single thread) and the second poll's imports")
                url = f"sqlite:///{tmp / 'profile'}.sqlite"
                prepare_database(url, base_url, args.feeds)
                run = run_child([sys.executable, __file__, "_profile", url], bench_env(url))
                if run.code != 0:
                    raise BenchFailure(f"profiled round failed: {run.stderr.strip()[-300:]}")
                profile = "\n".join(
                    findings(ours["SQLite"], details["SQLite"], cli["SQLite"], fp_default, start)
                )
                profile += "\n\n" + run.stdout.strip()
                profile += "\n\n" + import_profile(bench_env(f"sqlite:///{tmp / 'cli'}.sqlite"))
        finally:
            if pg is not None:
                pg.stop()

    print(
        report(
            feeds=args.feeds,
            items=args.items,
            total_bytes=total_bytes,
            fp_default=fp_default,
            fp_fast=fp_fast,
            ours=ours,
            cli=cli,
            start_s=start.seconds,
            notes=notes,
        )
    )
    if profile:
        print("#### Profile\n\n" + profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""API benchmark: app-like traffic on ``/v1/feed`` against a pre-built-bytes route of the same app.

For each database — the embedded SQLite default with ``--sqlite-stories`` (10k) and a throwaway
PostgreSQL (tests/pgserver.py) with ``--pg-stories`` (100k) — it loads a corpus (1-5 members a story
across the thirteen locales, tickers, related links, a change log), writes every story's feed
entries as the API does at start (timed), starts one uvicorn process the way ``serve`` would
(httptools, uvloop when present) and drives it with wrk (``-c64``, a Lua script picking a URL per
request, gzip on every request):

* ``/bench/ceiling`` — the first English page's pre-built bytes through the same middleware,
  routing, ETag and gzip handling (the ceiling);
* mixed traffic: a few hundred distinct URLs (13 locales × cursor pages × popular ticker and outlet
  filters, ``limit=20``), 30% revalidations with ``If-None-Match``;
* the first pages of all locales in turn; an unfiltered first page; a filter matching nothing;
* mixed traffic while a writer rewrites ``--writes-per-s`` (5) random stories' entries a second
  through ``refresh_story_entries`` (each write makes every kept page stale: the cache-miss regime);
* mixed traffic again on a server with the 1 s micro-cache on;
* each re-export format (RSS, Atom, JSON Feed) next to ``/v1/feed``: first pages of all locales in
  turn, and a feed reader's pattern (80% revalidations); ratios to ``/v1/feed`` in the same run.

Every run but the last has the micro-cache off, so each request reads the database. Speeds are
ratios to the ceiling measured on the same server in the same run, absolute numbers beside them;
the peak RSS of the API process is reported. Nothing here asserts a timing. The markdown table goes
to stdout, progress to stderr. Needs ``wrk`` (``make bench`` installs it: Debian ``wrk``).

uvicorn imports this module and calls ``app_factory`` (``--factory``), which builds settings and
the engine from ``BABELWIRE_*`` variables, as ``main.py serve`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.locales import LOCALES  # noqa: E402

OUTLETS = (
    ("gate", "Gate News", "third-party"),
    ("blocktempo", "BlockTempo", "none"),
    ("coindesk", "CoinDesk", "third-party"),
    ("panews", "PANews", "third-party"),
    ("forklog", "ForkLog", "none"),
)
TICKERS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "TON", "BNB", "ADA", "LINK", "ARB")
WORDS = [
    "bitcoin",
    "market",
    "price",
    "etf",
    "inflow",
    "record",
    "exchange",
    "token",
    "network",
    "update",
    "whale",
    "rally",
]
CACHE_ENV = "BENCH_RESPONSE_CACHE_S"


def log(message: str) -> None:
    print(f"[api] {message}", file=sys.stderr, flush=True)


def app_factory() -> Any:
    """The app as ``main.py serve`` builds it (uvicorn ``--factory`` entry point)."""
    from aggregator.db import make_engine
    from aggregator.settings import load_settings
    from api.app import create_app

    settings = load_settings()
    cache = os.environ.get(CACHE_ENV)
    return create_app(settings, make_engine(settings), response_cache_s=float(cache) if cache else None)


# ---- data ---------------------------------------------------------------------------------------


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


_TABLES = {
    "outlet": ("id", "name", "homepage", "disclaimer_policy"),
    "source": ("id", "url", "outlet_id", "locale", "enabled", "next_check_at", "interval_s", "error_count",
               "created_at"),
    "story": ("id", "canonical_item_id", "first_published_at", "updated_at", "hidden", "pinned"),
    "item": ("id", "source_id", "story_id", "identity", "guid", "link", "title", "summary_html", "summary_text",
             "content_html", "text", "published_at", "fetched_at", "updated_at", "image", "locale", "language",
             "tickers", "links", "content_hash", "tombstone"),
    "relatedstory": ("story_id", "related_id", "score", "signals"),
    "feedchange": ("story_id", "change", "at"),
}  # fmt: skip


def rows(stories: int, seed: int = 7) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(table, row) of the bench corpus: 1-5 members a story across the thirteen locales, tickers,
    related links, a change log; one story in 997 hidden."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    step = timedelta(days=365) / max(stories, 1)
    for oid, name, policy in OUTLETS:
        yield "outlet", (oid, name, f"https://{oid}.example/", policy)
    source_ids: dict[tuple[str, str], int] = {}
    for oid, _, _ in OUTLETS:
        for loc in LOCALES:
            sid = source_ids[(oid, loc)] = len(source_ids) + 1
            yield (
                "source",
                (sid, f"https://{oid}.example/{loc}/feed", oid, loc, True, _naive(now), 900, 0, _naive(now)),
            )
    sizes = [rng.choice((1, 1, 2, 3, 3, 4, 5)) for _ in range(stories + 1)]
    item_id = 0
    for story_id in range(1, stories + 1):
        at = _naive(start + step * story_id)
        yield "story", (story_id, item_id + 1, at, at, story_id % 997 == 0, False)
        item_id += sizes[story_id]
    item_id = 0
    for story_id in range(1, stories + 1):
        at = start + step * story_id
        locales = rng.sample(LOCALES, sizes[story_id])
        tickers = json.dumps(rng.sample(TICKERS, rng.randint(0, 2)))
        for k, loc in enumerate(locales):
            item_id += 1
            outlet = OUTLETS[(story_id + k) % len(OUTLETS)][0]
            words = " ".join(rng.choice(WORDS) for _ in range(8))
            title = f"{words} {story_id} ({loc})"
            more = " ".join(rng.choice(WORDS) for _ in range(40))
            summary = f"<p>{words} <b>{loc}</b> {more}</p>"
            link = f"https://{outlet}.example/{loc}/news/{story_id}"
            published = _naive(at + timedelta(minutes=k * 17))
            yield "item", (
                item_id, source_ids[(outlet, loc)], story_id, f"{item_id:064x}", link, link, title, summary,
                f"{words} {loc} {more}", "", title, published, published, published,
                f"https://img.example/{story_id}.jpg" if k == 0 else None, loc, None, tickers, "{}",
                f"{item_id:064x}", False,
            )  # fmt: skip
    for story_id in range(2, stories + 1, 3):
        for other in {max(1, story_id - rng.randint(1, 40)) for _ in range(2)}:
            if other != story_id:
                yield "relatedstory", (story_id, other, round(rng.random(), 3), "{}")
    for story_id in range(max(1, stories - 5000), stories + 1):
        yield "feedchange", (story_id, "upsert", _naive(now))


def load(database_url: str, stories: int) -> None:
    """Bulk-load the bench corpus: COPY on PostgreSQL, executemany on SQLite."""
    if database_url.startswith("sqlite"):
        import sqlite3

        path = database_url.split("sqlite:///", 1)[1]
        with contextlib.closing(sqlite3.connect(path)) as lite:
            batches: dict[str, list[tuple[Any, ...]]] = {}
            for table, row in rows(stories):
                batches.setdefault(table, []).append(row)
            for table, values in batches.items():
                cols = _TABLES[table]
                lite.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [
                        tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in r)
                        for r in values
                    ],
                )
            lite.commit()
            lite.execute("ANALYZE")
        return
    import psycopg

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        current: str | None = None
        stack = contextlib.ExitStack()
        copy: Any = None
        for table, row in rows(stories):
            if table != current:
                stack.close()
                stack = contextlib.ExitStack()
                copy = stack.enter_context(cur.copy(f"COPY {table} ({', '.join(_TABLES[table])}) FROM STDIN"))
                current = table
            copy.write_row(row)
        stack.close()
        for table in ("story", "item", "source"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.commit()


def write_entries(database_url: str) -> float:
    """Write every story's feed entries as the API does at start; the seconds it took."""
    from aggregator.db import make_engine
    from aggregator.entries import ensure_entries
    from aggregator.settings import load_settings
    from core.fallbacks import FALLBACKS

    engine = make_engine(load_settings(database_url=database_url))
    t = time.perf_counter()
    ensure_entries(engine, FALLBACKS)
    took = time.perf_counter() - t
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    engine.dispose()
    return took


# ---- server and load ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    pid: int

    def peak_rss_mb(self) -> float:
        """VmHWM of the serving process (one uvicorn process: no supervisor)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextlib.contextmanager
def server(database_url: str, cache_s: float | None) -> Iterator[Server]:
    """One ``serve``-like process (uvicorn, httptools, uvloop when present, one worker)."""
    port = _free_port()
    env = {**os.environ, "BABELWIRE_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    env.pop(CACHE_ENV, None)
    if cache_s is not None:
        env[CACHE_ENV] = str(cache_s)
    cmd = [sys.executable, "-m", "uvicorn", "bench_api:app_factory", "--factory", "--app-dir", str(ROOT / "bench"),
           "--host", "127.0.0.1", "--port", str(port), "--http", "httptools",
           "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        cmd += ["--loop", "uvloop"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not become ready")
            time.sleep(0.2)
        yield Server(base, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Run:
    name: str
    rps: float
    p99_ms: float
    bad: int
    cpu_ms: float = float("nan")
    """CPU time the server process spent per request (user + system): steadier than req/s when
    other work shares the machine."""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_SCRIPT = """
local targets = {}
for line in io.lines(os.getenv("BENCH_URLS")) do
  local path, etag = line:match("([^\t]+)\t?(.*)")
  targets[#targets + 1] = {path, etag}
end
local revalidate = tonumber(os.getenv("BENCH_REVALIDATE") or "0")
local in_turn = os.getenv("BENCH_IN_TURN") == "1"
local n = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local t
  if in_turn then n = n % #targets + 1; t = targets[n] else t = targets[math.random(#targets)] end
  local headers = {["Accept-Encoding"] = "gzip"}
  if revalidate > 0 and t[2] ~= "" and math.random() < revalidate then headers["If-None-Match"] = t[2] end
  return wrk.format("GET", t[1], headers)
end
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    name: str, srv: Server, targets: Sequence[tuple[str, str]], args: argparse.Namespace, *,
    revalidate: float = 0.0, in_turn: bool = False,
) -> Run:  # fmt: skip
    """wrk over ``targets`` (path, gzip ETag): a random one per request (or each in turn), gzip on
    every request, ``revalidate`` of them with ``If-None-Match``."""
    with tempfile.TemporaryDirectory(prefix="babelwire-wrk-") as tmp:
        urls = Path(tmp) / "urls.tsv"
        urls.write_text("".join(f"{p}\t{e}\n" for p, e in targets))
        script = Path(tmp) / "mix.lua"
        script.write_text(_SCRIPT)
        env = {**os.environ, "BENCH_URLS": str(urls), "BENCH_REVALIDATE": str(revalidate),
               "BENCH_IN_TURN": "1" if in_turn else "0"}  # fmt: skip
        cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
               "--timeout", "5s", "-s", str(script), srv.base]  # fmt: skip
        subprocess.run([*cmd[:3], "-d2s", *cmd[5:]], capture_output=True, check=True, env=env)  # warm-up
        return run_wrk(name, srv, cmd, env)


def run_wrk(
    name: str, srv: Server, cmd: list[str], env: dict[str, str], say: Callable[[str], None] = log
) -> Run:
    """Run the wrk command ``cmd`` and read its report: req/s, p99, failed requests (non-2xx/3xx and
    timeouts) and the server process's CPU time per request over the run; ``say`` logs the line."""
    cpu = _cpu_s(srv.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    cpu = _cpu_s(srv.pid) - cpu
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)
    done = re.search(r"(\d+) requests in", out)
    cpu_ms = cpu * 1000 / int(done.group(1)) if done and int(done.group(1)) else float("nan")
    say(f"{name}: {rps:.0f} req/s, p99 {p99:.1f} ms, {failed} failed, server CPU {cpu_ms:.2f} ms/request")
    return Run(name, rps, p99, failed, cpu_ms)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


POPULAR_FILTERS = ("tickers=BTC", "tickers=ETH", "tickers=BTC,SOL", "outlet=gate", "outlet=coindesk")
EMPTY_FILTER = "tickers=NOSUCHCOIN"


def targets(base: str, pages: int, filter_pages: int) -> list[tuple[str, str]]:
    """The mixed traffic's URLs, each with its gzip ETag: 13 locales × (cursor pages 1..``pages``
    unfiltered, 1..``filter_pages`` for each popular filter), ``limit=20``."""
    out: list[tuple[str, str]] = []
    for locale in LOCALES:
        for query, depth in [("", pages), *((f, filter_pages) for f in POPULAR_FILTERS)]:
            path = f"/v1/feed?locale={locale}&limit=20" + (f"&{query}" if query else "")
            for _ in range(depth):
                status, _, body = _get(base + path)
                assert status == 200, (status, path, body[:200])
                etag = _get(base + path, {"Accept-Encoding": "gzip"})[1]["etag"]
                out.append((path, etag))
                cursor = json.loads(body)["next_cursor"]
                if cursor is None:
                    break
                path = path.split("&cursor=")[0] + f"&cursor={cursor}"
    return out


EXPORT_FORMATS = ("rss", "atom", "json")
READER_REVALIDATE = 0.8
"""A feed reader's pattern: most polls send the ETag they hold."""


def first_pages(base: str, path: str) -> list[tuple[str, str]]:
    """The first page of ``path`` (``/v1/feed`` or a re-export) in every locale, with its gzip ETag."""
    out = []
    for loc in LOCALES:
        url = f"{path}?locale={loc}&limit=20"
        status, headers, body = _get(base + url, {"Accept-Encoding": "gzip"})
        assert status == 200, (status, url, body[:200])
        out.append((url, headers["etag"]))
    return out


def measure_exports(srv: Server, args: argparse.Namespace) -> list[str]:
    """Each re-export format next to ``/v1/feed`` on the same server (micro-cache off): the first
    pages of the 13 locales in turn, then a reader's pattern (random locale, 80% revalidations)."""
    feed = first_pages(srv.base, "/v1/feed")
    plain = wrk("/v1/feed first pages in turn", srv, feed, args, in_turn=True)
    polled = wrk("/v1/feed, 80% revalidations", srv, feed, args, revalidate=READER_REVALIDATE)
    lines = []
    for fmt in EXPORT_FORMATS:
        pages = first_pages(srv.base, f"/v1/feed.{fmt}")
        for pattern, run, ref in (
            ("first pages of the 13 locales in turn", wrk(f"{fmt} first pages in turn", srv, pages, args, in_turn=True), plain),
            ("80% revalidations", wrk(f"{fmt}, 80% revalidations", srv, pages, args, revalidate=READER_REVALIDATE), polled),
        ):  # fmt: skip
            lines.append(
                f"| {fmt} | {pattern} | {run.rps:,.0f} | {ref.rps:,.0f} | {run.rps / ref.rps:.2f} | "
                f"{run.p99_ms:.1f} | {run.cpu_ms:.2f} | {ref.cpu_ms / run.cpu_ms:.2f} | {run.bad} |"
            )
    return lines


class StoryWriter:
    """A thread rewriting ``per_s`` random stories' entries a second through the real writer path
    (``refresh_story_entries``, one transaction each), while a run measures the cache-miss regime."""

    def __init__(self, database_url: str, stories: int, per_s: float) -> None:
        import threading

        self.url, self.stories, self.per_s = database_url, stories, per_s
        self.done = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StoryWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from aggregator.db import make_engine
        from aggregator.entries import refresh_story_entries
        from aggregator.settings import load_settings

        engine = make_engine(load_settings(database_url=self.url))
        rng = random.Random(11)
        start = time.monotonic()
        try:
            while not self._stop.wait(max(0.0, start + self.done / self.per_s - time.monotonic())):
                with engine.begin() as conn:
                    refresh_story_entries(conn, [rng.randint(1, self.stories)])
                self.done += 1
        finally:
            self.seconds = time.monotonic() - start
            engine.dispose()


def measure(
    database_url: str, label: str, stories: int, args: argparse.Namespace, notes: list[str]
) -> tuple[list[str], list[str]]:
    """Every run of one database; markdown rows, ratios to the ceiling measured on the same server
    (and the re-export rows, ratios to ``/v1/feed``)."""
    lines = []
    with server(database_url, 0) as srv:
        mix = targets(srv.base, args.pages, args.filter_pages)
        first_pages = [(f"/v1/feed?locale={loc}&limit=20", "") for loc in LOCALES]
        unfiltered = [("/v1/feed?locale=en&limit=20", "")]
        empty = [(f"/v1/feed?locale=en&limit=20&{EMPTY_FILTER}", "")]
        assert json.loads(_get(srv.base + empty[0][0])[2])["items"] == []
        ceiling = wrk("ceiling", srv, [("/bench/ceiling", "")], args)
        runs = [
            ceiling,
            wrk(f"mixed traffic, {len(mix)} URLs, 30% revalidations", srv, mix, args, revalidate=0.3),
            wrk("first pages of the 13 locales in turn", srv, first_pages, args, in_turn=True),
            wrk("unfiltered first page (en)", srv, unfiltered, args),
            wrk(f"a filter matching nothing ({EMPTY_FILTER})", srv, empty, args),
        ]
        with StoryWriter(database_url, stories, args.writes_per_s) as writer:
            changing = wrk(
                f"mixed traffic while {args.writes_per_s:g} stories/s change", srv, mix, args, revalidate=0.3
            )
        runs.append(changing)
        notes.append(
            f"{label}: while stories change, a writer rewrote {writer.done} stories' entries through "
            f"`refresh_story_entries` ({writer.done / max(writer.seconds, 1e-9):.1f}/s, each its own "
            "transaction); every write makes the kept pages stale."
        )
        rss = srv.peak_rss_mb()
        exports = [f"| **{label}, {stories:,} stories** | | | | | | | | |", *measure_exports(srv, args)]
    with server(database_url, None) as srv:
        cached = wrk(f"mixed traffic, micro-cache on ({args.cache_s:g} s)", srv, mix, args, revalidate=0.3)
        cached_ceiling = wrk("ceiling (micro-cache on server)", srv, [("/bench/ceiling", "")], args)
    lines.append(f"| **{label}, {stories:,} stories** | | | | | | |")
    for r in runs:
        lines.append(
            f"| {r.name} (micro-cache off) | {r.rps:,.0f} | {r.rps / ceiling.rps:.2f} | {r.p99_ms:.1f} | "
            f"{r.cpu_ms:.2f} | {ceiling.cpu_ms / r.cpu_ms:.2f} | {r.bad} |"
        )
    lines.append(
        f"| {cached.name} | {cached.rps:,.0f} | {cached.rps / cached_ceiling.rps:.2f} | {cached.p99_ms:.1f} | "
        f"{cached.cpu_ms:.2f} | {cached_ceiling.cpu_ms / cached.cpu_ms:.2f} | {cached.bad} |"
    )
    lines.append(f"| peak RSS of the API process under the micro-cache-off runs | {rss:.0f} MB | | | | | |")
    return lines, exports


def app_check(database_url: str) -> None:
    """The bench's server serves this database (readiness), before any timing."""
    with server(database_url, 0) as srv:
        assert _get(srv.base + "/readyz")[0] == 200


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sqlite-stories", type=int, default=10_000)
    parser.add_argument("--pg-stories", type=int, default=100_000)
    parser.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--pages", type=int, default=6, help="cursor pages per locale, unfiltered")
    parser.add_argument("--filter-pages", type=int, default=3, help="cursor pages per locale and filter")
    parser.add_argument("--cache-s", type=float, default=1.0, help="micro-cache lifetime of the cached run")
    parser.add_argument(
        "--writes-per-s",
        type=float,
        default=5.0,
        help="stories rewritten a second in the 'while stories change' run",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_api: wrk not found (apt-get install -y wrk; make bench installs it)", file=sys.stderr)
        return 2

    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings

    lines = [
        f"### API: one `serve` process (uvicorn, httptools), wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, gzip on every request",
        "",
        "| run | req/s | × ceiling | p99 ms | server CPU ms/req | × ceiling (CPU) | failed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    export_lines = [
        "",
        "### Re-export (RSS, Atom, JSON Feed) next to `/v1/feed`, same server, micro-cache off",
        "",
        "| format | pattern | req/s | `/v1/feed` req/s | × `/v1/feed` | p99 ms | server CPU ms/req "
        "| × `/v1/feed` (CPU) | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="babelwire-bench-api-") as tmp:
        plan = []
        if args.only in (None, "sqlite"):
            plan.append(("SQLite", f"sqlite:///{tmp}/bench.sqlite", args.sqlite_stories))
        pg = None
        try:
            if args.only in (None, "postgres"):
                from tests.pgserver import PostgresServer

                pg = PostgresServer()
                pg.start()
                plan.append(("PostgreSQL", pg.create_database(), args.pg_stories))
            for label, url, stories in plan:
                engine = make_engine(load_settings(database_url=url))
                upgrade(engine)
                engine.dispose()
                t = time.perf_counter()
                load(url, stories)
                loaded = time.perf_counter() - t
                took = write_entries(url)
                log(f"{label}: loaded {stories:,} stories in {loaded:.1f} s; entries written in {took:.1f} s")
                notes.append(
                    f"{label}: every story's entries (13 locales) written in {took:.1f} s for {stories:,} stories."
                )
                table, exports = measure(url, label, stories, args, notes)
                lines += table
                export_lines += exports
        finally:
            if pg is not None:
                pg.stop()
    load1, load5, load15 = os.getloadavg()
    lines += export_lines
    lines += [
        "",
        f"Load average when the runs ended: {load1:.2f} {load5:.2f} {load15:.2f} (2 cores; other work ran beside "
        "the bench, so absolute req/s swing: the ratios, measured on one server in one run, are what count). "
        "Server CPU ms/req is the API process's user + system time over a run divided by its requests; "
        "its ratio (ceiling's CPU per request / the run's) is the speed ratio with the machine's other "
        "load taken out.",
        "",
        "The ceiling is `/bench/ceiling`: the pre-built bytes of the first English page, through the same "
        "middleware, routing, ETag and gzip handling as `/v1/feed`, never answered by the micro-cache. "
        "Mixed traffic: a random URL per request from 13 locales × cursor pages (1-6 unfiltered, 1-3 for "
        f"each of {', '.join(POPULAR_FILTERS)}), `limit=20`, `Accept-Encoding: gzip`, 30% with "
        "`If-None-Match` (→ 304). Targets (issue 17): mixed ≥ 0.6× ceiling with p99 < 50 ms; first pages of "
        "all locales with the micro-cache off ≥ 0.3×; a filter matching nothing within 2× the p99 of an "
        "unfiltered page. Re-export rows (issue 12): each format's first pages and a reader's pattern "
        "(a random locale's first page, 80% with `If-None-Match`) against `/v1/feed` under the same pattern, "
        "target ≥ 0.7×, p99 < 50 ms.",
        *(f"- {n}" for n in notes),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

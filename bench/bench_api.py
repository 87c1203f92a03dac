"""API benchmark: ``/v1/feed`` req/s and p99 against a pre-built-bytes route of the same app, same run.

Loads ``--stories`` stories (1-5 members each across the thirteen locales, tickers, related
links, a change log) into PostgreSQL with COPY — a throwaway server (tests/pgserver.py) unless
``--database-url`` is given — starts uvicorn as a subprocess the way production would (no
reload, httptools, uvloop, ``--workers``), and drives it with ``wrk -t2 -c64 -d10s --latency``:

* ``/bench/ceiling`` — pre-built bytes: the fastest this app can answer (the ceiling);
* ``/v1/feed?locale=en`` — the first page;
* a deep page (a signed cursor half way down the feed);
* the first page revalidated with ``If-None-Match`` (304), and a reader's pattern: 80% of the
  requests revalidate (304), 20% fetch the body (a wrk Lua script);
* the re-export's first pages (``/v1/feed.rss``, ``.atom``, ``.json``), plain and with the 80%
  revalidation pattern, each compared with the matching ``/v1/feed`` row;
* the ceiling, first and deep pages again on a second server with the response micro-cache off
  (``--no-uncached`` skips): every request then runs the page's statement, so these rows show what
  a page really costs (the cached rows mostly show the cache).

Every speed is reported as a ratio to the ceiling measured on the same server in the same run, with
absolute numbers beside it; nothing here asserts a timing. The markdown table goes to stdout, progress to stderr.
Needs ``wrk`` (Debian: ``apt-get install -y wrk``).

uvicorn imports this module in its workers and calls ``app_factory`` (``--factory``), which
builds settings and the engine from ``BABELWIRE_*`` variables, as ``main.py serve`` does.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def load(database_url: str, stories: int, seed: int = 7) -> None:
    """Bulk-load outlets, sources, stories, items, related links and changes with COPY."""
    import psycopg

    rng = random.Random(seed)
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(UTC)
    start = now - timedelta(days=365)
    step = timedelta(days=365) / max(stories, 1)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY outlet (id, name, homepage, disclaimer_policy) FROM STDIN") as cp:
            for oid, name, policy in OUTLETS:
                cp.write_row((oid, name, f"https://{oid}.example/", policy))
        source_ids: dict[tuple[str, str], int] = {}
        with cur.copy(
            "COPY source (id, url, outlet_id, locale, enabled, next_check_at, interval_s, error_count, created_at)"
            " FROM STDIN"
        ) as cp:
            for oid, _, _ in OUTLETS:
                for loc in LOCALES:
                    sid = len(source_ids) + 1
                    source_ids[(oid, loc)] = sid
                    cp.write_row(
                        (
                            sid,
                            f"https://{oid}.example/{loc}/feed",
                            oid,
                            loc,
                            True,
                            _naive(now),
                            900,
                            0,
                            _naive(now),
                        )
                    )
        sizes = [rng.choice((1, 1, 2, 3, 3, 4, 5)) for _ in range(stories + 1)]
        item_id = 0
        with cur.copy(
            "COPY story (id, canonical_item_id, first_published_at, updated_at, hidden, pinned) FROM STDIN"
        ) as cp:
            for story_id in range(1, stories + 1):
                at = _naive(start + step * story_id)
                cp.write_row((story_id, item_id + 1, at, at, story_id % 997 == 0, False))
                item_id += sizes[story_id]
        item_id = 0
        with cur.copy(
            "COPY item (id, source_id, story_id, identity, guid, link, title, summary_html, content_html, text,"
            " published_at, fetched_at, updated_at, image, locale, language, tickers, links, content_hash,"
            " tombstone) FROM STDIN"
        ) as cp:
            for story_id in range(1, stories + 1):
                at = start + step * story_id
                locales = rng.sample(LOCALES, sizes[story_id])
                tickers = json.dumps(rng.sample(TICKERS, rng.randint(0, 2)))
                for k, loc in enumerate(locales):
                    item_id += 1
                    outlet = OUTLETS[(story_id + k) % len(OUTLETS)][0]
                    words = " ".join(rng.choice(WORDS) for _ in range(8))
                    title = f"{words} {story_id} ({loc})"
                    summary = f"<p>{words} <b>{loc}</b> {' '.join(rng.choice(WORDS) for _ in range(40))}</p>"
                    link = f"https://{outlet}.example/{loc}/news/{story_id}"
                    published = _naive(at + timedelta(minutes=k * 17))
                    cp.write_row(
                        (
                            item_id, source_ids[(outlet, loc)], story_id, f"{item_id:064x}", link, link, title,
                            summary, "", title, published, published, published,
                            f"https://img.example/{story_id}.jpg" if k == 0 else None,
                            loc, None, tickers, "{}", f"{item_id:064x}", False,
                        )
                    )  # fmt: skip
        with cur.copy("COPY relatedstory (story_id, related_id, score, signals) FROM STDIN") as cp:
            for story_id in range(2, stories + 1, 3):
                for other in {max(1, story_id - rng.randint(1, 40)) for _ in range(2)}:
                    if other != story_id:
                        cp.write_row((story_id, other, round(rng.random(), 3), "{}"))
        with cur.copy("COPY feedchange (story_id, change, at) FROM STDIN") as cp:
            for story_id in range(max(1, stories - 5000), stories + 1):
                cp.write_row((story_id, "upsert", _naive(now)))
        for table in ("story", "item", "source"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")


def deep_cursor(database_url: str, secret: str, depth: int) -> str:
    """A valid cursor ``depth`` stories down the English feed (signed as the API signs it)."""
    import psycopg

    from api.cursor import FeedPosition, TokenSigner

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT first_published_at, id FROM story WHERE NOT hidden"
            " ORDER BY first_published_at DESC, id DESC OFFSET %s LIMIT 1",
            (depth,),
        ).fetchone()
    assert row is not None
    return TokenSigner(secret).feed_cursor(FeedPosition(row[0].replace(tzinfo=UTC), row[1]))


# ---- server and load ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(database_url: str, workers: int, cache_s: float | None) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "BABELWIRE_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    env.pop(CACHE_ENV, None)
    if cache_s is not None:
        env[CACHE_ENV] = str(cache_s)
    cmd = [sys.executable, "-m", "uvicorn", "bench_api:app_factory", "--factory", "--app-dir", str(ROOT / "bench"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--http", "httptools",
           "--no-access-log", "--log-level", "warning"]  # fmt: skip
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401

        cmd += ["--loop", "uvloop"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
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
        yield base
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


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
EXPORT_FORMATS = ("rss", "atom", "json")


REVALIDATE_LUA = """
local etag = os.getenv("BENCH_ETAG")
local share = tonumber(os.getenv("BENCH_REVALIDATE") or "0.8")
local plain, conditional
init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  plain = wrk.format("GET", nil, wrk.headers)
  local h = {}
  for k, v in pairs(wrk.headers) do h[k] = v end
  h["If-None-Match"] = etag
  conditional = wrk.format("GET", nil, h)
end
request = function()
  if math.random() < share then return conditional end
  return plain
end
"""
"""wrk script: a feed reader's pattern — ``BENCH_REVALIDATE`` of the requests (80%) revalidate with
the current ETag (304), the rest fetch the body."""


def wrk(
    name: str,
    url: str,
    args: argparse.Namespace,
    headers: dict[str, str] | None = None,
    revalidate_etag: str | None = None,
) -> Run:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    env = None
    if revalidate_etag is not None:
        script = Path(tempfile.gettempdir()) / "babelwire-bench-revalidate.lua"
        script.write_text(REVALIDATE_LUA)
        cmd += ["-s", str(script)]
        env = {**os.environ, "BENCH_ETAG": revalidate_etag, "BENCH_REVALIDATE": "0.8"}
    # warm-up (JIT-free Python, but pools, caches and the planner warm up)
    subprocess.run([*cmd[:3], "-d2s", url], capture_output=True, check=True)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)
    log(f"{name}: {rps:.0f} req/s, p99 {p99:.1f} ms, {failed} failed")
    return Run(name, rps, p99, failed)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def measure(base: str, args: argparse.Namespace, cursor: str, *, full: bool) -> list[Run]:
    first = f"{base}/v1/feed?locale=en"
    deep = f"{base}/v1/feed?locale=en&cursor={cursor}"
    status, headers, body = _get(first)
    assert status == 200 and len(json.loads(body)["items"]) > 0, (status, body[:200])
    assert _get(deep)[0] == 200
    etag = headers["etag"]
    assert _get(first, {"If-None-Match": etag})[0] == 304
    label = "" if full else " (micro-cache off)"
    runs = [wrk(f"ceiling: /bench/ceiling{label}", f"{base}/bench/ceiling", args)]
    runs.append(wrk(f"/v1/feed?locale=en first page{label}", first, args))
    runs.append(wrk(f"/v1/feed deep page ({args.depth} stories down){label}", deep, args))
    if full:
        runs.append(wrk("/v1/feed first page, If-None-Match → 304", first, args, {"If-None-Match": etag}))
        runs.append(wrk("/v1/feed first page, 80% revalidations", first, args, revalidate_etag=etag))
    for fmt in EXPORT_FORMATS:
        url = f"{base}/v1/feed.{fmt}?locale=en"
        status, headers, body = _get(url)
        assert status == 200 and len(body) > 1000, (fmt, status, body[:200])
        runs.append(wrk(f"/v1/feed.{fmt}?locale=en first page{label}", url, args))
        if full:
            runs.append(
                wrk(
                    f"/v1/feed.{fmt} first page, 80% revalidations",
                    url,
                    args,
                    revalidate_etag=headers["etag"],
                )
            )
    return runs


def export_ratios(runs: Sequence[Run]) -> list[str]:
    """Each re-export row against the ``/v1/feed`` row of the same kind, on the same server."""
    by_name = {r.name: r for r in runs}
    lines = []
    for r in runs:
        m = re.match(r"/v1/feed\.(\w+)(.*)", r.name)
        if not m:
            continue
        rest = m.group(2).replace("?locale=en", "", 1)
        twin = by_name.get(f"/v1/feed?locale=en{rest}") or by_name.get(f"/v1/feed{rest}")
        if twin is not None and twin.rps:
            lines.append(f"| {r.name} | {r.rps / twin.rps:.2f} | {twin.name} |")
    return lines


def table(servers: Sequence[Sequence[Run]], args: argparse.Namespace) -> str:
    """One row per run; each server's rows are ratios to the ceiling measured on that server."""
    lines = [
        f"### API: {args.stories:,} stories in PostgreSQL, uvicorn --workers {args.workers} (httptools), "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s",
        "",
        "| route | req/s | × ceiling | p99 ms | failed |",
        "|---|---:|---:|---:|---:|",
    ]
    for runs in servers:
        ceiling = runs[0].rps
        for r in runs:
            lines.append(f"| {r.name} | {r.rps:,.0f} | {r.rps / ceiling:.2f} | {r.p99_ms:.1f} | {r.bad} |")
    ratios = [line for runs in servers for line in export_ratios(runs)]
    if ratios:
        lines += ["", "| re-export route | × /v1/feed | compared with |", "|---|---:|---|", *ratios]
    lines += [
        "",
        "Target: /v1/feed first page ≥ 0.50 × ceiling (goal 0.60), p99 < 50 ms at 100k stories; "
        "re-export (RSS, Atom, JSON Feed) ≥ 0.70 × /v1/feed in the same run. "
        "Rows marked (micro-cache off) come from a second server started with the 1 s response cache "
        "off: every request reads the database, so they show the cost of a page, not of the cache.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stories", type=int, default=100_000)
    parser.add_argument(
        "--database-url", default=None, help="an EMPTY PostgreSQL database (default: throwaway)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--depth", type=int, default=None, help="deep page position (default: half the feed)")
    parser.add_argument("--no-uncached", action="store_true", help="skip the runs with the micro-cache off")
    args = parser.parse_args(argv)
    args.depth = args.depth if args.depth is not None else args.stories // 2
    if shutil.which("wrk") is None:
        print("bench_api: wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return 2

    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings

    pg = None
    url = args.database_url
    with tempfile.TemporaryDirectory(prefix="babelwire-bench-api-"):
        try:
            if url is None:
                from tests.pgserver import PostgresServer

                pg = PostgresServer()
                pg.start()
                url = pg.create_database()
            settings = load_settings(database_url=url)
            engine = make_engine(settings)
            upgrade(engine)
            engine.dispose()
            t = time.perf_counter()
            load(settings.database_url, args.stories)
            log(f"loaded {args.stories:,} stories in {time.perf_counter() - t:.1f} s")
            cursor = deep_cursor(settings.database_url, settings.cursor_secret, args.depth)
            servers = []
            with server(settings.database_url, args.workers, None) as base:
                servers.append(measure(base, args, cursor, full=True))
            if not args.no_uncached:
                with server(settings.database_url, args.workers, 0) as base:
                    servers.append(measure(base, args, cursor, full=False))
        finally:
            if pg is not None:
                pg.stop()
    print(table(servers, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""API benchmark: app-like traffic on ``/v1/feed`` against a pre-built-bytes route of the same app.

For each database — the embedded SQLite default with ``--sqlite-stories`` (10k) and a throwaway
PostgreSQL (tests/pgserver.py) with ``--pg-stories`` (100k) — it takes a corpus (1-5 members a story
across the thirteen locales, tickers, related links, a change log) with every story's feed entries
written as the API does at start, made once per size in a SQLite file kept in ``--corpus-dir``
(:func:`prepare_sqlite`): the SQLite run serves a copy of it, PostgreSQL is filled from it by COPY
(:func:`copy_to_postgres`: minutes, where writing 100k stories' entries again took 18). It starts
one uvicorn process the way ``serve`` would (httptools, uvloop when present, no access log) and
drives it with wrk (``-c64``, a Lua script picking a URL per request, gzip on every request); with
``--pin`` the server has CPU 0 to itself and wrk (one thread) runs on CPU 1:

* ``/bench/ceiling`` — the first English page's pre-built bytes through the same middleware,
  routing, ETag and gzip handling (the ceiling);
* mixed traffic: a few hundred distinct URLs (13 locales × cursor pages × popular ticker and outlet
  filters, ``limit=20``), 30% revalidations with ``If-None-Match``;
* the first pages of all locales in turn; an unfiltered first page; a filter matching nothing;
* mixed traffic while a writer rewrites ``--writes-per-s`` (5) stories' entries a second through
  ``refresh_story_entries``, random ones, then among the newest 100 (each write drops the kept
  pages whose locale and published-at range it meets: the cache-miss regime);
* mixed traffic again on a server with the 1 s micro-cache on;
* each re-export format (RSS, Atom, JSON Feed) next to ``/v1/feed``: first pages of all locales in
  turn, and a feed reader's pattern (80% revalidations); ratios to ``/v1/feed`` in the same run.

Every run but the last has the micro-cache off, so each request reads the database. Speeds are
ratios to the ceiling measured on the same server in the same run, absolute numbers beside them,
and every run's p99 beside the ceiling's (the machine's tail, with no database work); the peak RSS
of the API process is reported. Nothing here asserts a timing. The markdown table goes
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


TIMES_PATH = "/bench/times"
"""Answered by :class:`Timed` (the bench's own wrapper, outside the app): the requests' times in the
server since the last call, then forgotten."""


class Timed:
    """The bench's outermost ASGI layer: each HTTP request's wall time inside the server (from the
    app being called to the response's last byte handed to uvicorn), the event loop's stalls (a
    ticker's wake-up late by more than :data:`STALL_MS`) and the garbage collector's pauses, so a
    run's tail can be told apart: queueing for the loop and the machine's scheduling (wrk's p99
    minus these) from work of ours."""

    STALL_MS = 5.0
    TICK_S = 0.01
    """The ticker's period: 100 wake-ups a second cost the server ~1 ms of CPU a second."""

    def __init__(self, app: Any) -> None:
        import gc

        self.app = app
        self.times: list[float] = []
        self.gc_ms: list[float] = []
        self.stalls: list[float] = []
        self._gc_start = 0.0
        self._ticker: Any = None
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif info.get("generation", 0) >= 1:  # young collections are many and short: counted once below
            self.gc_ms.append((time.perf_counter() - self._gc_start) * 1000)

    async def _tick(self) -> None:
        import asyncio

        every = self.TICK_S
        while True:
            t = time.perf_counter()
            await asyncio.sleep(every)
            late = (time.perf_counter() - t - every) * 1000
            if late > self.STALL_MS:
                self.stalls.append(late)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._ticker is None:
            import asyncio

            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        if scope["path"] == TIMES_PATH:
            times, self.times = sorted(self.times), []
            gc_ms, self.gc_ms = self.gc_ms, []
            stalls, self.stalls = self.stalls, []

            def q(f: float) -> float:
                return times[min(len(times) - 1, int(f * len(times)))] * 1000 if times else float("nan")

            body = json.dumps(
                {"n": len(times), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": q(1.0),
                 "gc_ms": sorted(gc_ms), "stalls_ms": sorted(stalls)}
            ).encode()  # fmt: skip
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        t = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.times.append(time.perf_counter() - t)


def app_factory() -> Any:
    """The app as ``main.py serve`` builds it (uvicorn ``--factory`` entry point; start-up's objects
    frozen out of the collector's passes), inside :class:`Timed`."""
    from aggregator.db import make_engine
    from aggregator.settings import load_settings
    from api.app import create_app

    settings = load_settings()
    cache = os.environ.get(CACHE_ENV)
    app = create_app(settings, make_engine(settings), response_cache_s=float(cache) if cache else None)
    import gc

    gc.collect()
    gc.freeze()  # as ``serve`` does
    return Timed(app)


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


def story_count(database_url: str) -> int:
    from aggregator.db import make_engine
    from aggregator.settings import load_settings

    engine = make_engine(load_settings(database_url=database_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM story")).scalar() or 0)
    finally:
        engine.dispose()


def prepare_sqlite(path: Path, stories: int) -> str:
    """The bench corpus of ``stories`` stories with every entry written (``bench_api.load`` and
    ``write_entries``, as the API does at start) in the SQLite file ``path``, made once and kept:
    a file that already holds a finished corpus is migrated and reused as it is. Built under a
    ``.partial`` name and renamed when complete, so an interrupted run leaves nothing half-made."""
    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings

    url = f"sqlite:///{path}"
    if path.exists():
        engine = make_engine(load_settings(database_url=url))
        upgrade(engine)
        engine.dispose()
        found = story_count(url)
        log(f"SQLite: reusing the prepared {path} ({found:,} stories)")
        return (
            f"SQLite: the corpus prepared by an earlier run of this bench in {path.name} ({found:,} stories)."
        )
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    engine = make_engine(load_settings(database_url=f"sqlite:///{partial}"))
    upgrade(engine)
    engine.dispose()
    t = time.perf_counter()
    load(f"sqlite:///{partial}", stories)
    loaded = time.perf_counter() - t
    took = write_entries(f"sqlite:///{partial}")
    partial.rename(path)
    log(
        f"SQLite: loaded {stories:,} stories in {loaded:.1f} s; entries written in {took:.1f} s; kept as {path}"
    )
    return (
        f"SQLite: entries of {stories:,} stories (13 locales) written in {took:.1f} s; kept for later runs."
    )


def copy_to_postgres(sqlite_path: Path, database_url: str) -> float:
    """Fill a migrated, empty PostgreSQL database with every row of the prepared SQLite file (the
    corpus and the entries the real writer made there) by COPY, then VACUUM ANALYZE; the seconds it
    took. Writing 100k stories' entries again on PostgreSQL took 871 s under load; the rows are the
    same on both engines (naive UTC times, JSON as text, booleans 0/1)."""
    import sqlite3

    import psycopg
    from sqlmodel import SQLModel

    import aggregator.models  # noqa: F401  (registers the tables)

    t = time.perf_counter()
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    tables = SQLModel.metadata.sorted_tables
    with contextlib.closing(sqlite3.connect(sqlite_path)) as lite, psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE " + ", ".join(f'"{t.name}"' for t in tables) + " CASCADE")
            for table in tables:
                present = {r[1] for r in lite.execute(f'PRAGMA table_info("{table.name}")')}
                cols = [c.name for c in table.columns if c.name in present]
                if not cols:
                    continue  # a table the SQLite file does not have
                quoted = ", ".join(f'"{c}"' for c in cols)
                with cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                    for row in lite.execute(f'SELECT {quoted} FROM "{table.name}"'):
                        copy.write_row(row)
                for col in table.primary_key.columns:
                    if len(table.primary_key.columns) == 1 and isinstance(col.type, sa.Integer):
                        cur.execute(
                            f'SELECT setval(seq::regclass, (SELECT coalesce(max("{col.name}"), 0) + 1 FROM "{table.name}"), false) '
                            f"FROM pg_get_serial_sequence('\"{table.name}\"', '{col.name}') AS seq WHERE seq IS NOT NULL"
                        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t


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


PIN_SERVER, PIN_LOAD = "0", "1"
"""With ``--pin``: the server alone on CPU 0; wrk (one thread), the bench process, its writer and
PostgreSQL on CPU 1, so the server's tail is not wrk's threads taking its core."""


@contextlib.contextmanager
def server(database_url: str, cache_s: float | None, pin: bool = False) -> Iterator[Server]:
    """One ``serve``-like process (uvicorn, httptools, uvloop when present, one worker); ``pin``:
    on CPU :data:`PIN_SERVER` only."""
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
    if pin:
        cmd = ["taskset", "-c", PIN_SERVER, *cmd]
    access_log = os.environ.get("BENCH_ACCESS_LOG")  # as ``serve`` runs: uvicorn's access log on
    if access_log:
        cmd = [c for c in cmd if c != "--no-access-log"]
        cmd[cmd.index("warning")] = "info"
    out = open(access_log, "ab") if access_log else None  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
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
        if out is not None:
            out.close()


@dataclass(frozen=True)
class Run:
    name: str
    rps: float
    p99_ms: float
    bad: int
    cpu_ms: float = float("nan")
    """CPU time the server process spent per request (user + system): steadier than req/s when
    other work shares the machine."""
    inside: dict[str, Any] | None = None
    """The requests' times inside the server over the run (``Timed``)."""
    waited: float = float("nan")
    """The share of the run the server's loop thread was runnable but waiting for a CPU (the
    kernel's run-queue time, ``/proc/<pid>/schedstat``): the machine's doing, not ours."""

    def inside_text(self) -> str:
        """In-server p99 / max ms, and the loop's stalls and GC pauses over the run."""
        if not self.inside:
            return "—"
        i = self.inside
        return (
            f"{i['p99_ms']:.1f} / {i['max_ms']:.0f}; {len(i['stalls_ms'])} stalls > {Timed.STALL_MS:g} ms"
            + (f" (max {max(i['stalls_ms']):.0f})" if i["stalls_ms"] else "")
            + f"; GC {len(i['gc_ms'])}"
            + (f" (max {max(i['gc_ms']):.0f} ms)" if i["gc_ms"] else "")
            + f"; waited for a CPU {self.waited:.0%} of the run"
        )


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


def _waiting_s(pid: int) -> float:
    """Seconds the process's main thread spent runnable on a run queue, not running."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


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
        if args.pin:
            cmd = ["taskset", "-c", PIN_LOAD, *cmd]
        return run_wrk(name, srv, cmd, env)


def run_wrk(
    name: str, srv: Server, cmd: list[str], env: dict[str, str], say: Callable[[str], None] = log
) -> Run:
    """Run the wrk command ``cmd`` and read its report: req/s, p99, failed requests (non-2xx/3xx and
    timeouts) and the server process's CPU time per request over the run; ``say`` logs the line."""
    _get(srv.base + TIMES_PATH)  # forget the warm-up's
    cpu, waited, t = _cpu_s(srv.pid), _waiting_s(srv.pid), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    cpu = _cpu_s(srv.pid) - cpu
    waited = (_waiting_s(srv.pid) - waited) / (time.perf_counter() - t)
    inside = json.loads(_get(srv.base + TIMES_PATH)[2])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (int(errors.group(1)) if errors else 0)
    done = re.search(r"(\d+) requests in", out)
    cpu_ms = cpu * 1000 / int(done.group(1)) if done and int(done.group(1)) else float("nan")
    run = Run(name, rps, p99, failed, cpu_ms, inside, waited)
    say(
        f"{name}: {rps:.0f} req/s, p99 {p99:.1f} ms, {failed} failed, server CPU {cpu_ms:.2f} ms/request; "
        f"in the server p99/max {run.inside_text()}"
    )
    return run


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
    """A thread rewriting ``per_s`` stories' entries a second through the real writer path
    (``refresh_story_entries``, one transaction each), while a run measures the cache-miss regime:
    random stories of the whole corpus, or (``newest``) among the newest ones (what ingest touches:
    every write meets the first pages of the locales that list the story)."""

    def __init__(self, database_url: str, stories: int, per_s: float, newest: int | None = None) -> None:
        import threading

        self.url, self.stories, self.per_s = database_url, stories, per_s
        self.lowest = 1 if newest is None else max(1, stories - newest + 1)
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
                    refresh_story_entries(conn, [rng.randint(self.lowest, self.stories)])
                self.done += 1
        finally:
            self.seconds = time.monotonic() - start
            engine.dispose()


NEWEST_WRITTEN = 100
"""The "newest stories change" run rewrites stories among the newest this many."""


def measure(
    database_url: str, label: str, stories: int, args: argparse.Namespace, notes: list[str]
) -> tuple[list[str], list[str]]:
    """Every run of one database; markdown rows, ratios to the ceiling measured on the same server
    (and the re-export rows, ratios to ``/v1/feed``)."""
    lines = []
    with server(database_url, 0, args.pin) as srv:
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
        for where, newest in (
            ("random stories", None),
            (f"among the newest {NEWEST_WRITTEN}", NEWEST_WRITTEN),
        ):
            with StoryWriter(database_url, stories, args.writes_per_s, newest) as writer:
                name = f"mixed traffic while {args.writes_per_s:g} stories/s change ({where})"
                runs.append(wrk(name, srv, mix, args, revalidate=0.3))
            notes.append(
                f"{label}: while stories change ({where}), a writer rewrote {writer.done} stories' entries "
                f"through `refresh_story_entries` ({writer.done / max(writer.seconds, 1e-9):.1f}/s, each its "
                "own transaction); a write drops only the kept pages whose locale and published-at range "
                "it meets."
            )
        rss = srv.peak_rss_mb()
        exports = [f"| **{label}, {stories:,} stories** | | | | | | | | |", *measure_exports(srv, args)]
    with server(database_url, None, args.pin) as srv:
        cached = wrk(f"mixed traffic, micro-cache on ({args.cache_s:g} s)", srv, mix, args, revalidate=0.3)
        cached_ceiling = wrk("ceiling (micro-cache on server)", srv, [("/bench/ceiling", "")], args)
    load1 = os.getloadavg()[0]
    lines.append(
        f"| **{label}, {stories:,} stories** (load average {load1:.1f} after its runs) | | | | | | | | |"
    )
    for r in runs:
        lines.append(
            f"| {r.name} (micro-cache off) | {r.rps:,.0f} | {r.rps / ceiling.rps:.2f} | {r.p99_ms:.1f} | "
            f"{ceiling.p99_ms:.1f} | {r.inside_text()} | {r.cpu_ms:.2f} | {ceiling.cpu_ms / r.cpu_ms:.2f} | {r.bad} |"
        )
    lines.append(
        f"| {cached.name} | {cached.rps:,.0f} | {cached.rps / cached_ceiling.rps:.2f} | {cached.p99_ms:.1f} | "
        f"{cached_ceiling.p99_ms:.1f} | {cached.inside_text()} | {cached.cpu_ms:.2f} | "
        f"{cached_ceiling.cpu_ms / cached.cpu_ms:.2f} | {cached.bad} |"
    )
    lines.append(
        f"| peak RSS of the API process under the micro-cache-off runs | {rss:.0f} MB | | | | | | | |"
    )
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
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server alone on CPU 0, wrk (one thread), this process and PostgreSQL on CPU 1 (taskset)",
    )
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the SQLite corpora are made once and kept (babelwire-bench-api-<stories>.sqlite); "
        "the SQLite run uses a copy, PostgreSQL is filled from one by COPY",
    )
    args = parser.parse_args(argv)
    if args.pin:
        args.threads = 1
        if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
            print("bench_api: --pin needs taskset and two CPUs", file=sys.stderr)
            return 2
        os.sched_setaffinity(0, {int(PIN_LOAD)})  # the writer thread and PostgreSQL (started here) too
    if shutil.which("wrk") is None:
        print("bench_api: wrk not found (apt-get install -y wrk; make bench installs it)", file=sys.stderr)
        return 2

    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.settings import load_settings

    lines = [
        f"### API: one `serve` process (uvicorn, httptools), wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s, gzip on every request"
        + (
            ", server alone on CPU 0, wrk on CPU 1 (`--pin`)"
            if args.pin
            else ", server and wrk sharing the CPUs"
        ),
        "",
        "| run | req/s | × ceiling | p99 ms | ceiling's p99 ms | in the server: p99 / max ms; loop stalls; GC "
        "≥ gen1; CPU wait | server CPU ms/req | × ceiling (CPU) | failed |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
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
        plan: list[tuple[str, str, int]] = []
        pg = None
        try:
            if args.only in (None, "sqlite"):
                corpus = args.corpus_dir / f"babelwire-bench-api-{args.sqlite_stories}.sqlite"
                notes.append(prepare_sqlite(corpus, args.sqlite_stories))
                shutil.copyfile(corpus, f"{tmp}/bench.sqlite")  # the writer runs change it: a copy
                plan.append(("SQLite", f"sqlite:///{tmp}/bench.sqlite", args.sqlite_stories))
            if args.only in (None, "postgres"):
                from tests.pgserver import PostgresServer

                corpus = args.corpus_dir / f"babelwire-bench-api-{args.pg_stories}.sqlite"
                notes.append(prepare_sqlite(corpus, args.pg_stories))
                pg = PostgresServer()
                pg.start()
                url = pg.create_database()
                engine = make_engine(load_settings(database_url=url))
                upgrade(engine)
                engine.dispose()
                took = copy_to_postgres(corpus, url)
                log(f"PostgreSQL: {args.pg_stories:,} stories and their entries copied in {took:.1f} s")
                notes.append(
                    f"PostgreSQL: the same {args.pg_stories:,} stories and the entries the real writer made for "
                    f"them, copied from that SQLite corpus by COPY (then VACUUM ANALYZE) in {took:.1f} s."
                )
                plan.append(("PostgreSQL", url, args.pg_stories))
            for label, url, stories in plan:
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
        "load taken out. The tail: wrk's p99 is from a request's send to its answer, so it holds the wait "
        "for the server's loop (64 connections on one loop: on average 64 ÷ req/s) and whatever the machine "
        "did meanwhile; the ceiling's p99 (no database work at all) beside every run is the machine's share. "
        "'In the server' is measured by the bench's outermost ASGI layer: each request's time from the app "
        "being called to its last byte handed to uvicorn (p99 / max), the event loop's stalls (a 10 ms ticker "
        f"late by more than {Timed.STALL_MS:g} ms: a batch of requests handled in one loop turn, or the "
        "process descheduled), garbage collections of generation 1 or 2, and the share of the run the "
        "server's loop thread was runnable but waiting for a CPU (the kernel's run-queue time).",
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

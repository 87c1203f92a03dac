#!/usr/bin/env python3
"""Soak and polling capacity: 1,000 loopback sources, 2 ``worker`` + 1 ``serve --no-scheduler``
processes on PostgreSQL, outlets publishing at realistic rates, for ``--minutes`` (30 in ``make bench``).

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--sources 1000] [--period-s 600]

Every source publishes a new item about every ``--period-s`` seconds (each its own period, 0.5-1.5×,
and phase), its feed carrying the newest ``HISTORY`` items, with an ETag (so an unchanged feed is a
304). The outlets run in a child process. Measured:

- items/s stored while steady (after warm-up: every source polled once and every item in a story);
- fetch-to-visible latency: from an item's publication on the outlet to its first sight in the API
  (``/v1/feed/changes`` polled every second, then ``/v1/stories/{id}`` for the new stories' members);
- RSS of each process, sampled every 5 s: at the end of warm-up, at the end, the peak, the growth;
- database size at the end of warm-up and at the end;
- polling capacity: every source made due at once, at the end; the time until both workers polled
  all of them gives sources per worker-hour, at the 304 ratio that burst had.

Prints a markdown section on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest_server import child_server, serve_until_term  # noqa: E402  (bench/ is on the path: run as a script)

HISTORY = 5
"""Items per feed: the newest ones."""
PUBLISH_EVERY = 5
"""Before the capacity burst, one source in this many publishes an extra item (so ~80 % answer 304)."""
WORDS = [
    a + b
    for a in (
        "ba",
        "ko",
        "mi",
        "ren",
        "tu",
        "sha",
        "vel",
        "dor",
        "qi",
        "lum",
        "fa",
        "zen",
        "pra",
        "gol",
        "ne",
    )
    for b in ("rax", "tin", "mo", "lek", "sun", "dra", "pi", "vos", "ke", "nor", "ul", "bex")
]


def log(message: str) -> None:
    print(f"[bench_soak] {message}", file=sys.stderr, flush=True)


class Schedule:
    """When source ``n`` published its item ``k`` (k < 0: before the run), the same in every process."""

    def __init__(self, start: float, period_s: float) -> None:
        self.start = start
        self.period_s = period_s

    def period(self, n: int) -> float:
        return self.period_s * (0.5 + _fraction(f"period {n}"))

    def published(self, n: int, k: int) -> float:
        period = self.period(n)
        return self.start + _fraction(f"phase {n}") * period + k * period

    def newest(self, n: int, now: float) -> int:
        period = self.period(n)
        return math.floor((now - self.start - _fraction(f"phase {n}") * period) / period)


def _fraction(key: str) -> float:
    """A number in [0, 1) from ``key``, the same in every process (independent periods and phases)."""
    return int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16) / 2**64


def item_xml(n: int, k: int, when: float) -> str:
    seed = int(hashlib.blake2b(f"{n}/{k}".encode(), digest_size=8).hexdigest(), 16)
    words = [WORDS[(seed >> (7 * i)) % len(WORDS)] for i in range(9)]
    title = f"{' '.join(words[:6]).capitalize()} {n}-{k}"
    body = f"{' '.join(words)}. Outlet {n} item {k} reports a figure of {seed % 100_000}."
    link = f"https://outlet{n}.example/news/{k}"
    return (
        f"<item><guid>{link}</guid><title>{title}</title><link>{link}</link>"
        f"<description>{body}</description><pubDate>{formatdate(when, usegmt=True)}</pubDate></item>"
    )


def serve_outlets(sources: int, start: float, period_s: float) -> None:
    """The child process: every source's feed at ``/outlet/N.xml``; ``/stats`` counts 200s and 304s."""
    from sources.feedserver import FeedServer, RequestHandler

    schedule = Schedule(start, period_s)
    counts = {"200": 0, "304": 0}
    extra: dict[int, float] = {}
    """Sources with an extra item (``/publish?every=N``), and when it was published."""
    lock = threading.Lock()
    server = FeedServer()

    def publish(h: RequestHandler) -> None:
        every = int(h.path.rsplit("=", 1)[1])
        with lock:
            extra.update({n: time.time() for n in range(0, sources, every)})
        h.reply(200, b"ok")

    def route(n: int) -> Any:
        def answer(h: RequestHandler) -> None:
            newest = schedule.newest(n, time.time())
            bonus = extra.get(n)
            etag = f'"{n}-{newest}-{bonus is not None}"'
            if h.headers.get("If-None-Match") == etag:
                with lock:
                    counts["304"] += 1
                h.reply(304, headers={"ETag": etag})
                return
            items = "".join(
                item_xml(n, k, schedule.published(n, k)) for k in range(newest, newest - HISTORY, -1)
            )
            if bonus is not None:
                items = item_xml(n, 1_000_000 + n, bonus) + items
            body = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Outlet {n}</title>{items}</channel></rss>"
            ).encode()
            with lock:
                counts["200"] += 1
            h.reply(200, body, {"Content-Type": "application/rss+xml; charset=utf-8", "ETag": etag})

        return answer

    for n in range(sources):
        server.routes[f"/outlet/{n}.xml"] = route(n)
    server.routes["/stats"] = lambda h: h.reply(200, json.dumps(counts).encode())
    server.routes["/publish"] = publish
    serve_until_term(server)


@contextlib.contextmanager
def outlets(sources: int, start: float, period_s: float) -> Iterator[str]:
    argv = [sys.executable, __file__, "--serve-outlets", str(sources), str(start), str(period_s)]
    with child_server(argv, "outlet server") as url:
        yield url


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (a worker's fork server, and the parse and feature-extraction
    processes the fork server starts: grandchildren, not children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                with contextlib.suppress(OSError):
                    kids = [int(c) for c in (task / "children").read_text().split()]
                    out += kids
                    todo += kids
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory in MB of the process itself, and of all its descendants together."""
    return _rss_kb(pid) / 1024, sum(_rss_kb(p) for p in _descendants(pid)) / 1024


WINDOW_S = 180.0
"""RSS at a point in time is read over the samples (every 5 s) in the window ending there: a
worker's RSS swings by a factor of two within a round (a dedupe run's working set, then the trim),
and the window spans two or more rounds."""

Samples = list[tuple[float, dict[str, float]]]
"""(seconds since the processes started, MB per process) every 5 s."""


def window(samples: Samples, name: str, start: float) -> list[float]:
    """The samples of ``name`` from ``start`` to ``start + WINDOW_S``, sorted."""
    return sorted(s[name] for t, s in samples if start <= t <= start + WINDOW_S) or [float("nan")]


def rss_tables(samples: Samples, warm_at: float, end_at: float) -> list[str]:
    """The RSS part of the report, from the samples alone (``--rss-from`` re-renders a saved run)."""
    lines = [
        f"RSS of each process itself (`VmRSS`), and separately of all its descendants together (a worker's "
        f"fork server and the parse and feature-extraction processes it starts), sampled every 5 s. A "
        f"worker's RSS swings by up to 2× within a round (a dedupe run's working set, then the trim), so a "
        f"level is read over a {WINDOW_S:.0f} s window: its **floor** (the minimum: what stays between rounds) "
        f"and its **median**. Growth after warm-up: from the first window after warm-up (which ends at the "
        f"later of every source polled once with its history in stories, and the first third of the run: the "
        f"same rule for every process) to the last window of the run.",
        "",
        *(
            [f"(The steady period, {end_at - warm_at:.0f} s, is shorter than two windows: they overlap.)", ""]
            if end_at - warm_at < 2 * WINDOW_S
            else []
        ),
        "| process | floor after warm-up → at the end (MB) | floor growth | median after warm-up → at the end | "
        "median growth | peak after warm-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in samples[0][1]:
        peak = max((s[name] for t, s in samples if t >= warm_at), default=0.0)
        if peak == 0:  # the API has no children
            continue
        # Both windows inside the steady period (in a short run they overlap).
        w0 = window(samples, name, warm_at)
        w1 = window(samples, name, max(warm_at, end_at - WINDOW_S))
        f0, f1, m0, m1 = w0[0], w1[0], w0[len(w0) // 2], w1[len(w1) // 2]
        lines.append(
            f"| {name} | {f0:.0f} → {f1:.0f} | {(f1 - f0) / f0:+.1%} | {m0:.0f} → {m1:.0f} | "
            f"{(m1 - m0) / m0:+.1%} | {peak:.0f} |"
        )
    marks = [samples[0][0] + (samples[-1][0] - samples[0][0]) * i / 6 for i in range(7)]
    lines += [
        "",
        "RSS over time (MB, the process itself; floor / median of the window before each mark):",
        "",
        "| process | " + " | ".join(f"{m / 60:.0f} min" for m in marks) + " |",
        "|---|" + "---:|" * len(marks),
    ]
    for name in samples[0][1]:
        if name.endswith(" children"):
            continue
        cells = []
        for m in marks:
            w = window(samples, name, m - WINDOW_S)
            cells.append(f"{w[0]:.0f} / {w[len(w) // 2]:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


class Watcher:
    """Sees what the API serves: ``/v1/feed/changes`` every second, then the new stories' members;
    records when each item URL was first seen."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.first_seen: dict[str, float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=30) as client:
            since = client.get("/v1/feed/changes", params={"locale": "en"}).json()["next_since"]
            while not self._stop.wait(1.0):
                try:
                    while True:
                        page = client.get("/v1/feed/changes", params={"locale": "en", "since": since}).json()
                        since = page["next_since"]
                        for change in page["changes"]:
                            if change["change"] != "upsert":
                                continue
                            story = client.get(f"/v1/stories/{change['id']}", params={"locale": "en"})
                            now = time.time()
                            if story.status_code == 200:
                                for member in story.json()["members"]:
                                    self.first_seen.setdefault(member["url"], now)
                        if not page.get("has_more"):
                            break
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    self.errors += 1
                    if self.errors <= 3:
                        log(f"watcher: {type(exc).__name__}: {exc}")


def _stop(process: Any) -> int | str:
    """Stop a process; one that does not stop in time is killed and reported, the figures kept."""
    try:
        return int(process.stop(timeout_s=120))
    except AssertionError as e:
        log(str(e).splitlines()[0])
        return "killed: did not stop in 120 s"


def scalar(url: str, sql: str) -> Any:
    import sqlalchemy as sa

    from aggregator.db import make_engine
    from aggregator.settings import Settings

    engine = make_engine(Settings(database_url=url))
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run(args: argparse.Namespace) -> list[str]:
    from aggregator.db import make_engine
    from aggregator.migrate import upgrade
    from aggregator.registry import add_sources
    from aggregator.settings import Settings
    from sources.opml import SourceSpec
    from tests.livesite import free_port
    from tests.pgserver import PostgresServer
    from tests.processes import Process

    pg = PostgresServer()
    pg.start()
    start = time.time()
    history = datetime.fromtimestamp(start, UTC).replace(tzinfo=None).isoformat()
    schedule = Schedule(start, args.period_s)
    try:
        url = pg.create_database()
        engine = make_engine(Settings(database_url=url))
        upgrade(engine)
        with outlets(args.sources, start, args.period_s) as base:
            add_sources(
                engine,
                [
                    SourceSpec(url=f"{base}/outlet/{n}.xml", outlet="coindesk", locale="en", title=None)
                    for n in range(args.sources)
                ],
            )
            engine.dispose()
            port = free_port()
            env = dict(
                os.environ,
                BABELWIRE_DATABASE_URL=url,
                BABELWIRE_ALLOW_PRIVATE_FEEDS="1",
                BABELWIRE_TICK_S="1",
                BABELWIRE_MIN_INTERVAL_S=str(args.min_interval_s),
                BABELWIRE_MAX_INTERVAL_S=str(args.max_interval_s),
                BABELWIRE_FETCH_CONCURRENCY="16",
                # Every outlet shares 127.0.0.1 here; in the field they are a thousand hosts.
                BABELWIRE_PER_HOST_CONCURRENCY="16",
            )
            # --untrimmed-worker-2: a control in the same run, without the arena cap and the trim.
            extra: dict[int, dict[str, str]] = {}
            if args.untrimmed_worker_2:
                extra.setdefault(2, {})["BABELWIRE_MALLOC_TRIM"] = "0"
            for spec in args.worker_env:  # I:KEY=VALUE
                index, _, assignment = spec.partition(":")
                key, _, value = assignment.partition("=")
                extra.setdefault(int(index), {})[key] = value
            processes: dict[str, Process] = {}
            for i in range(1, args.workers + 1):
                label = f"worker {i}" + (
                    f" ({', '.join(f'{k}={v}' for k, v in extra[i].items())})" if i in extra else ""
                )
                processes[label] = Process(["worker"], dict(env, **extra.get(i, {})))
            api = Process(["serve", "--no-scheduler", "--port", str(port)], env)
            processes["api"] = api
            try:
                api.wait_for(lambda line: "Uvicorn running" in line, timeout_s=180)
                watcher = Watcher(f"http://127.0.0.1:{port}")
                watcher.start()
                began = time.time()
                deadline = began + args.minutes * 60
                samples: list[tuple[float, dict[str, float]]] = []
                warm: dict[str, Any] | None = None
                while time.time() < deadline:
                    sample: dict[str, float] = {}
                    for k, p in processes.items():
                        sample[k], sample[f"{k} children"] = rss_mb(p.pid)
                    samples.append((time.time(), sample))
                    for name, p in processes.items():
                        if p.proc.poll() is not None:
                            raise RuntimeError(f"{name} exited:\n{p.stderr[-3000:]}")
                    # Warm-up ends, for every process alike, at the later of: every source polled
                    # once with its history in stories, and the first third of the run.
                    if warm is None and time.time() - began >= args.minutes * 60 / 3:
                        unpolled = scalar(url, "SELECT count(*) FROM source WHERE last_checked_at IS NULL")
                        # The feeds' history (published before the run) all in stories; what is
                        # published since keeps arriving, so some new item always waits for dedupe.
                        storyless = scalar(
                            url,
                            f"SELECT count(*) FROM item WHERE story_id IS NULL AND published_at < '{history}'",
                        )
                        if unpolled == 0 and storyless == 0:
                            warm = {
                                "at": time.time(),
                                "items": scalar(url, "SELECT count(*) FROM item"),
                                "db": scalar(url, "SELECT pg_database_size(current_database())"),
                            }
                            log(f"warm after {warm['at'] - began:.0f} s: {warm['items']} items")
                    time.sleep(5)
                if warm is None:
                    raise RuntimeError("never warm: raise --minutes (the first round did not finish)")
                end = {
                    "at": time.time(),
                    "items": scalar(url, "SELECT count(*) FROM item"),
                    "db": scalar(url, "SELECT pg_database_size(current_database())"),
                }
                watcher.stop()
                import httpx

                served = httpx.get(f"{base}/stats").json()
                # A realistic 304 share for the burst: one feed in PUBLISH_EVERY has a new item.
                httpx.get(f"{base}/publish", params={"every": PUBLISH_EVERY})
                # Capacity: every source due at once; both workers poll until none is left.
                utc_now = "(now() AT TIME ZONE 'utc')"  # the columns hold naive UTC
                mark = scalar(
                    url,
                    f"UPDATE source SET next_check_at = {utc_now} - interval '1 second' RETURNING {utc_now}",
                )
                burst_start = time.time()
                checked = f"SELECT count(*) FROM source WHERE last_checked_at >= '{mark.isoformat()}'"
                while scalar(url, checked) < args.sources and time.time() - burst_start < 600:
                    time.sleep(0.2)
                burst_s = time.time() - burst_start
                after = httpx.get(f"{base}/stats").json()
            finally:
                codes = {name: _stop(p) for name, p in processes.items()}
                if args.verbose:
                    for name, p in processes.items():
                        log(f"--- {name} stderr (tail) ---\n" + "".join(p.lines[-40:]))
        failed = {name: code for name, code in codes.items() if code != 0}
        tracebacks = [name for name, p in processes.items() if "Traceback" in p.stderr]
    finally:
        pg.stop()

    log(f"the watcher saw {len(watcher.first_seen):,} item URLs ({watcher.errors} errors)")
    if args.samples_json is not None:
        args.samples_json.write_text(
            json.dumps(
                {
                    "warm_s": warm["at"] - began,
                    "end_s": end["at"] - began,
                    "samples": [[t - began, s] for t, s in samples],
                }
            )
        )
    latencies = []
    for item_url, seen in watcher.first_seen.items():
        n, k = item_url.removeprefix("https://outlet").split(".example/news/")
        if int(k) >= 1_000_000:  # the burst's extra items
            continue
        published = schedule.published(int(n), int(k))
        if published >= warm["at"]:
            latencies.append(seen - published)
    expected = sum(
        schedule.newest(n, end["at"]) - schedule.newest(n, warm["at"]) for n in range(args.sources)
    )
    steady_s = end["at"] - warm["at"]
    polls = served["200"] + served["304"]
    burst_200 = after["200"] - served["200"]
    burst_304 = after["304"] - served["304"]
    capacity = args.sources / burst_s / args.workers * 3600

    lines = [
        f"### Soak: {args.sources:,} loopback sources, {args.workers} workers + 1 API on PostgreSQL, "
        f"{args.minutes:g} min",
        "",
        f"Outlets publish one item every {args.period_s:g} s on average per source "
        f"({args.sources / args.period_s:.2f} items/s in all); workers poll every "
        f"{args.min_interval_s}-{args.max_interval_s} s (adaptive), tick 1 s, 16 fetch slots each. "
        f"Warm-up (every source polled once, its {HISTORY} items of history all in stories, and at least the "
        f"first third of the run) ended after "
        f"{warm['at'] - began:.0f} s; the figures below are for the {steady_s / 60:.1f} min after it.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| items stored / s (steady) | {(end['items'] - warm['items']) / steady_s:.2f} |",
        f"| items published / s (steady) | {expected / steady_s:.2f} |",
        f"| items published while steady, seen in the API | {len(latencies):,} of {expected:,} |",
        f"| fetch-to-visible latency p50 / p95 / max (s) | {percentile(latencies, 0.5):.1f} / "
        f"{percentile(latencies, 0.95):.1f} / {max(latencies, default=float('nan')):.1f} |",
        f"| polls (whole run), 304 share | {polls:,}, {served['304'] / max(1, polls):.0%} |",
        f"| database size at warm-up end → end (MB) | {warm['db'] / 2**20:.1f} → {end['db'] / 2**20:.1f} "
        f"({(end['db'] - warm['db']) / 2**20 / (steady_s / 3600):.1f} MB/h) |",
        f"| API watcher errors | {watcher.errors} |",
        f"| processes with a traceback on stderr | {', '.join(tracebacks) or 'none'} |",
        f"| processes that exited badly at the end | {', '.join(f'{k} ({v})' for k, v in failed.items()) or 'none'} |",
        "",
    ]
    lines += rss_tables([(t - began, v) for t, v in samples], warm["at"] - began, end["at"] - began)
    lines += [
        "",
        f"Polling capacity: all {args.sources:,} sources made due at once were polled by the {args.workers} "
        f"workers in "
        f"{burst_s:.1f} s ({burst_304 / max(1, burst_200 + burst_304):.0%} answered 304; one in {PUBLISH_EVERY} had a new "
        f"item, stored and deduped in the burst): **{capacity:,.0f} sources per worker-hour** (target ≥ 10,000).",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-outlets"]:
        serve_outlets(int(argv[1]), float(argv[2]), float(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (make bench: 30)")
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--period-s", type=float, default=600.0, help="mean seconds between a source's items")
    parser.add_argument("--min-interval-s", type=int, default=60)
    parser.add_argument("--max-interval-s", type=int, default=120)
    parser.add_argument(
        "--untrimmed-worker-2",
        action="store_true",
        help="run worker 2 with BABELWIRE_MALLOC_TRIM=0 (no arena cap, no trim): a control for worker 1's RSS",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2 in make bench)")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="I:KEY=VALUE",
        help="an environment variable for worker I only (1-based), e.g. 2:BABELWIRE_MALLOC_TRIM=0: A/B in one run",
    )
    parser.add_argument(
        "--samples-json",
        type=Path,
        help="write every RSS sample (seconds from the start, MB per process) here",
    )
    parser.add_argument("--verbose", action="store_true", help="print the tail of each process's log")
    parser.add_argument(
        "--rss-from", type=Path, help="only print the RSS tables of a run saved with --samples-json (no soak)"
    )
    args = parser.parse_args(argv)
    if args.rss_from is not None:
        saved = json.loads(args.rss_from.read_text())
        samples = [(float(t), v) for t, v in saved["samples"]]
        print("\n".join(rss_tables(samples, saved["warm_s"], saved.get("end_s", samples[-1][0]))))
        return 0
    print("\n".join(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

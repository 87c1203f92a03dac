"""Ingest bench runs: the feedparser baselines, our poll round in a child process, the CLI rounds and the profile."""

from __future__ import annotations

import asyncio
import cProfile
import ctypes
import io
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from core.locales import LOCALES  # noqa: E402

BENCH_SCRIPT = Path(__file__).with_name("bench_ingest.py")
"""Children run through the bench's entry point (``_round``, ``_profile``)."""
P = ParamSpec("P")
T = TypeVar("T")


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
    cpu_before = _cpu_with_children()
    started = time.perf_counter()
    report = asyncio.run(poll_round(engine, settings))
    seconds = time.perf_counter() - started
    _stop_fork_server()
    cpu = _cpu_with_children() - cpu_before
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


def _stop_fork_server() -> None:
    """Stop and reap multiprocessing's fork server, so the CPU of the parse processes it forked
    (and reaped) counts in ``RUSAGE_CHILDREN`` (a private call; a bench may)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # type: ignore[attr-defined]


def _cpu_with_children() -> float:
    """This process's CPU and that of the processes it reaped (the round's parse processes)."""
    return _cpu_self() + sum(
        getattr(resource.getrusage(resource.RUSAGE_CHILDREN), f) for f in ("ru_utime", "ru_stime")
    )


@dataclass
class Run:
    """One child process: wall time, its own rusage (wait4), its output."""

    code: int
    seconds: float
    peak_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str


def run_child(cmd: Sequence[str], env: dict[str, str], cwd: Path = ROOT) -> Run:
    """Run ``cmd`` and reap it with ``wait4`` so the peak RSS is this child's alone.

    ``RUSAGE_CHILDREN`` is the maximum over every child reaped so far (the earlier runs, the
    feed server), so it cannot tell one run from another.
    """
    _become_subreaper()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            code=proc.returncode,
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss / 1024,
            cpu_s=usage.ru_utime + usage.ru_stime + _reap_orphans(),
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


_SUBREAPER: list[bool] = []


def _become_subreaper() -> None:
    """Adopt the orphans of the children run here (Linux ``PR_SET_CHILD_SUBREAPER``).

    A multiprocessing fork server is not reaped by the process that started it: it outlives it
    briefly, with the CPU of the parse processes it forked and reaped, and would be counted for
    nobody. Adopted, it is reaped by :func:`_reap_orphans` and its CPU added to the run's."""
    if _SUBREAPER:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _SUBREAPER.append(libc.prctl(36, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        _SUBREAPER.append(False)


def _reap_orphans(quiet_s: float = 1.0) -> float:
    """CPU seconds of the adopted processes that exit until none has for ``quiet_s``."""
    cpu = 0.0
    last = time.monotonic()
    while _SUBREAPER and _SUBREAPER[0] and time.monotonic() - last < quiet_s:
        try:
            pid, _status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        cpu += usage.ru_utime + usage.ru_stime
        last = time.monotonic()
    return cpu


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
    cmd = [sys.executable, str(BENCH_SCRIPT), "_round", database_url, *(["--dedupe"] if dedupe else [])]
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


def cumulative_s(stats: pstats.Stats, path_suffix: str, names: str | tuple[str, ...]) -> float:
    """Cumulative seconds of the functions called ``names`` in files ending with ``path_suffix``."""
    wanted = (names,) if isinstance(names, str) else names
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    return sum(
        v[3] for (file, _line, func), v in table.items() if file.endswith(path_suffix) and func in wanted
    )


def hottest(stats: pstats.Stats, top: int) -> list[str]:
    """The ``top`` functions by own time as a markdown note's lines (a fenced listing, paths made
    relative to site-packages, the standard library and the repository)."""
    listing = io.StringIO()
    stats.stream = listing  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    paths = sysconfig.get_paths()
    rows = [
        line.replace(paths["purelib"] + "/", "")
        .replace(paths["stdlib"] + "/", "")
        .replace(str(ROOT) + "/", "")
        for line in listing.getvalue().splitlines()
        if re.match(r"\s*[\d/]+\s+\d", line) or "ncalls" in line
    ]
    return ["", f"Hottest {top} functions by own time:", "", "```", *rows, "```"]


STAGES = (
    ("parse (aggregator/parse.py parse_feed)", "aggregator/parse.py", "parse_feed"),
    (
        "normalize (aggregator/normalize/entry.py normalize_entry)",
        "aggregator/normalize/entry.py",
        "normalize_entry",
    ),
    ("decide (aggregator/decide.py decide)", "aggregator/decide.py", "decide"),
    ("store (aggregator/poll.py _store, decide excluded)", "aggregator/poll.py", "_store"),
    (
        "dedupe features (aggregator/dedupe/ingest.py encoded_features, in the parse processes)",
        "aggregator/dedupe/ingest.py",
        "encoded_features",
    ),
    ("storing them (aggregator/store.py store_features)", "aggregator/store.py", "store_features"),
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
    seconds = {label: cumulative_s(stats, path, name) for label, path, name in STAGES}
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
    lines += hottest(stats, top)
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


DEDUPE_STAGES = (
    (
        "features before the transaction: extract + store missing (run.py prepare_features; absent before)",
        "aggregator/dedupe/run.py",
        "prepare_features",
    ),
    (
        "features in the transaction: decode stored / extract missing (run.py _features)",
        "aggregator/dedupe/run.py",
        "_features",
    ),
    ("clustering (Clusterer.seed + add)", "aggregator/dedupe/cluster.py", ("seed", "add")),
    ("canonicals (run.py _set_canonicals)", "aggregator/dedupe/run.py", "_set_canonicals"),
    ("feed entries (entries.py refresh_story_entries)", "aggregator/entries.py", "refresh_story_entries"),
    ("empty stories + feed changes (run.py _finish)", "aggregator/dedupe/run.py", "_finish"),
    ("load new items + context (run.py queries)", "sqlalchemy/engine/result.py", ("all",)),
)


def dedupe_profile_child(database_url: str, top: int = 12) -> None:
    """In a fresh process: a poll round (not profiled), then ``run_dedupe`` end to end under
    cProfile (every stage: loading, features, clustering, writing stories and decisions, canonicals,
    feed entries, commit); prints a markdown note with the stage table and the hottest functions."""
    from aggregator.db import make_engine
    from aggregator.dedupe.run import run_dedupe
    from aggregator.poll import poll_round
    from aggregator.settings import load_settings

    settings = load_settings(database_url=database_url, allow_private_feeds=True)
    engine = make_engine(settings)
    inserted = asyncio.run(poll_round(engine, settings)).inserted
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    report = run_dedupe(engine)
    profiler.disable()
    wall = time.perf_counter() - started
    engine.dispose()
    stats = pstats.Stats(profiler)
    seconds = {label: cumulative_s(stats, path, names) for label, path, names in DEDUPE_STAGES}
    # Nested stages counted once: the row loading of the ones above is theirs, not the load's.
    lines = [
        f"`run_dedupe` end to end under cProfile on {inserted:,} freshly polled items (cold features): "
        f"{wall:.1f} s, {report.items:,} items → {report.new_stories:,} stories "
        "(the profiler slows Python code, so read the shares; stages may overlap where one calls another).",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    for label, value in seconds.items():
        lines.append(f"| {label} | {value:.2f} | {100 * value / wall:.0f}% |")
    commit = cumulative_s(stats, "sqlalchemy/orm/session.py", "commit")
    flush = cumulative_s(stats, "sqlalchemy/orm/session.py", "flush")
    lines.append(f"| ORM flushes (session.flush, wherever) | {flush:.2f} | {100 * flush / wall:.0f}% |")
    lines.append(f"| commit | {commit:.2f} | {100 * commit / wall:.0f}% |")
    lines += hottest(stats, top)
    print("\n".join(lines))


# --- the peer: reader ----------------------------------------------------------------------------


def reader_child(db_path: str, workers: int, feeds_file: str) -> None:
    """In a fresh process: ``reader`` (the peer) adds the feeds on first use, then one
    ``update_feeds(workers=…, scheduled=False)`` (every feed, due or not, like our ``--all``); prints
    JSON with the entries it holds after."""
    from reader import make_reader

    urls = Path(feeds_file).read_text().split()
    r = make_reader(db_path)
    try:
        known = {f.url for f in r.get_feeds()}
        for url in urls:
            if url not in known:
                r.add_feed(url)
        r.update_feeds(workers=workers, scheduled=False)
        entries = r.get_entry_counts().total
        broken = sum(1 for f in r.get_feeds() if f.last_exception)
    finally:
        r.close()
    print(json.dumps({"entries": entries, "broken": broken}))


@dataclass
class ReaderResult:
    workers: int
    first: Rate
    second: Run
    broken: int


def reader_rounds(tmp: Path, base_url: str, feeds: int) -> list[ReaderResult]:
    """``reader`` on the bench's feeds with workers=1 and workers=4, each on a fresh database: first
    update (every entry new), then a second update in a new process (every feed answers 304),
    process start included for both, as for ``main.py poll --once``."""
    feeds_file = tmp / "reader-feeds.txt"
    feeds_file.write_text("\n".join(f"{base_url}/feeds/{n}.xml" for n in range(feeds)))
    out = []
    for workers in (1, 4):
        db = str(tmp / f"reader-{workers}.sqlite")
        cmd = [sys.executable, str(BENCH_SCRIPT), "_reader", db, str(workers), str(feeds_file)]
        first = run_child(cmd, dict(os.environ))
        if first.code != 0:
            tail = (first.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise BenchFailure(f"reader (workers={workers}) failed: {tail}")
        result = json.loads(first.stdout.strip().splitlines()[-1])
        second = run_child(cmd, dict(os.environ))
        if second.code != 0:
            raise BenchFailure(f"reader's second update (workers={workers}) failed")
        rate = Rate(result["entries"], first.seconds, first.peak_rss_mb, first.cpu_s)
        out.append(ReaderResult(workers, rate, second, result["broken"]))
    return out

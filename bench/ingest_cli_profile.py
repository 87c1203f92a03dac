"""``main.py poll --once`` end to end under cProfile: process start, imports, the round, dedupe.

The bench's other profiles look at one stage at a time (the round inline in one thread, then
``run_dedupe`` alone); this one profiles the command as a user runs it, in its own process, so
the shares say where the CPU of ``poll --once`` goes. Every process and thread is profiled
(``ingest_profile_site/sitecustomize.py``: the command with its event loop and store threads, the
fork server, the pool workers that parse, normalize and extract dedupe features), in CPU seconds
(``time.thread_time``), and each figure says which process it is from.

Standalone, to profile another checkout of the code with the same feeds (how the "before" was
made)::

    .venv/bin/python bench/ingest_cli_profile.py --feeds 26 --root /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import os
import pstats
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest_runs import bench_env, poll_summary, prepare_database, run_child  # noqa: E402

STAGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "imports (importlib, wherever they happen)",
        "<frozen importlib._bootstrap>",
        ("_find_and_load",),
    ),
    ("fetch (fetch.py Fetcher.fetch, event loop thread)", "aggregator/fetch.py", ("fetch",)),
    ("store (poll.py SourceUpdater._store, store threads)", "aggregator/poll.py", ("_store",)),
    ("storing features (poll.py _store_features)", "aggregator/poll.py", ("_store_features",)),
    ("dedupe (run.py run_dedupe)", "aggregator/dedupe/run.py", ("run_dedupe",)),
    (
        "— features before its transaction (run.py prepare_features)",
        "aggregator/dedupe/run.py",
        ("prepare_features",),
    ),
    ("— loading rows (run.py _load)", "aggregator/dedupe/run.py", ("_load",)),
    ("— features in its transaction (run.py _features)", "aggregator/dedupe/run.py", ("_features",)),
    ("— clustering (cluster.py Clusterer.add)", "aggregator/dedupe/cluster.py", ("add",)),
    ("— canonicals (run.py _set_canonicals)", "aggregator/dedupe/run.py", ("_set_canonicals",)),
    (
        "— feed entries (entries.py refresh_story_entries)",
        "aggregator/entries.py",
        ("refresh_story_entries",),
    ),
    (
        "parse + normalize (normalize prepare_feed)",
        "aggregator/normalize/entry.py",
        ("prepare_feed",),
    ),
    ("— parse (parse.py parse_feed)", "aggregator/parse.py", ("parse_feed",)),
    (
        "— normalize (normalize/entry.py normalize_entry)",
        "aggregator/normalize/entry.py",
        ("normalize_entry",),
    ),
    ("dedupe features (poll.py extract_features)", "aggregator/poll.py", ("extract_features",)),
    ("— entities (features.py _entities)", "aggregator/dedupe/features.py", ("_entities",)),
    ("— minhash (features.py _minhash)", "aggregator/dedupe/features.py", ("_minhash",)),
)


SITE = Path(__file__).with_name("ingest_profile_site")
"""Its ``sitecustomize`` profiles every process and thread of the run (``BABELWIRE_PROFILE_DIR``)."""

PLUMBING = (
    "runpy.py",
    "threading.py",
    "concurrent/futures/",
    "multiprocessing/",
    "asyncio/",
    "selectors.py",
    "ingest_profile_site/",
    "<frozen runpy>",
)
"""Frames that only call others (process and thread start, event loop): left out of the listing."""


def _load_profiles(folder: Path) -> dict[str, list[pstats.Stats]]:
    """Profiles written by the run, by process role (main, worker, forkserver, tracker)."""
    out: dict[str, list[pstats.Stats]] = {}
    for path in sorted(folder.glob("*.prof")):
        role = path.name.split("-", 1)[0]
        out.setdefault(role, []).append(pstats.Stats(str(path)))
    return out


def _table(stats: pstats.Stats) -> dict[tuple[str, int, str], tuple[float, float]]:
    """(file, line, function) → (own CPU s, cumulative CPU s)."""
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = stats.stats  # type: ignore[attr-defined]
    return {k: (v[2], v[3]) for k, v in raw.items()}


def _name(key: tuple[str, int, str]) -> str:
    file, line, func = key
    paths = sysconfig.get_paths()
    file = file.replace(paths["purelib"] + "/", "").replace(paths["stdlib"] + "/", "")
    file = file.replace(str(ROOT) + "/", "")
    return f"{func}" if file == "~" else f"{file}:{line}({func})"


def _cpu_total(stats: list[pstats.Stats]) -> float:
    return sum(float(getattr(s, "total_tt")) for s in stats)  # noqa: B009 (not in pstats' stubs)


def cli_profile(database_url: str, root: Path = ROOT, top: int = 25, keep: Path | None = None) -> str:
    """Profile ``main.py poll --once --quiet`` of ``root`` on a prepared database, every process and
    thread (CPU seconds from ``time.thread_time``); a markdown note."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cmd = [sys.executable, str(root / "main.py"), "poll", "--once", "--quiet"]
        env = bench_env(database_url)
        env["PYTHONPATH"] = f"{SITE}{os.pathsep}{root}"
        env["BABELWIRE_PROFILE_DIR"] = str(folder)
        run = run_child(cmd, env, cwd=root)
        summary = poll_summary(run)
        roles = _load_profiles(folder)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.prof"):
                (keep / path.name).write_bytes(path.read_bytes())
    main_stats = roles.get("main", [])
    workers = roles.get("worker", [])
    main_cpu, worker_cpu = _cpu_total(main_stats), _cpu_total(workers)
    other_cpu = sum(_cpu_total(v) for k, v in roles.items() if k not in ("main", "worker"))
    total = max(main_cpu + worker_cpu + other_cpu, 1e-9)
    lines = [
        f"`main.py poll --once --quiet` with every process and thread under cProfile (CPU seconds, "
        f"`time.thread_time`): {summary.inserted:,} items in {run.seconds:.1f} s wall, "
        f"{run.cpu_s:.1f} CPU s by the OS's count (profiler overhead included), peak RSS "
        f"{run.peak_rss_mb:.0f} MB. Profiled CPU: **{total:.1f} s** — the command's own process "
        f"(all its threads: event loop, store threads, dedupe) {main_cpu:.1f} s ({main_cpu / total:.0%}), "
        f"{len(workers)} pool worker processes (parse, normalize, dedupe features) {worker_cpu:.1f} s "
        f"({worker_cpu / total:.0%}), fork server and resource tracker {other_cpu:.1f} s.",
        "",
        "| stage | command process s | worker processes s | share of all |",
        "|---|---:|---:|---:|",
    ]
    tables = {
        "main": [_table(s) for s in main_stats],
        "worker": [_table(s) for s in workers],
    }

    def cum(role: str, path: str, funcs: tuple[str, ...]) -> float:
        return sum(
            v[1] for t in tables[role] for (f, _l, fn), v in t.items() if f.endswith(path) and fn in funcs
        )

    for label, suffix, funcs in STAGES:
        m, w = cum("main", suffix, funcs), cum("worker", suffix, funcs)
        lines.append(f"| {label} | {m:.2f} | {w:.2f} | {(m + w) / total:.0%} |")
    merged: dict[tuple[str, int, str], list[float]] = {}
    for role, ts in tables.items():
        for t in ts:
            for key, (_own, cumulative) in t.items():
                row = merged.setdefault(key, [0.0, 0.0])
                row[0 if role == "main" else 1] += cumulative
    ranked = sorted(
        (
            (key, m, w)
            for key, (m, w) in merged.items()
            if not any(part in key[0] for part in PLUMBING) and key[2] != "<built-in method builtins.exec>"
        ),
        key=lambda r: -(r[1] + r[2]),
    )[:top]
    lines += [
        "",
        f"Top {top} by cumulative CPU over the whole run (process and thread start, event loop and "
        "pool plumbing left out; nested rows overlap):",
        "",
        "| function | command process s | worker processes s | share of all |",
        "|---|---:|---:|---:|",
    ]
    for key, m, w in ranked:
        lines.append(f"| `{_name(key)}` | {m:.2f} | {w:.2f} | {(m + w) / total:.0%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=26)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose main.py is profiled")
    parser.add_argument("--keep", type=Path, help="copy every process's .prof file into this folder")
    args = parser.parse_args(argv)
    from ingest_feeds import write_feeds
    from ingest_server import feed_server

    with tempfile.TemporaryDirectory(prefix="babelwire-cli-profile-") as tmp:
        feeds = Path(tmp) / "feeds"
        feeds.mkdir()
        write_feeds(feeds, args.feeds, args.items)
        with feed_server(feeds) as base_url:
            url = f"sqlite:///{tmp}/cli-profile.sqlite"
            prepare_database(url, base_url, args.feeds)
            print(cli_profile(url, args.root.resolve(), keep=args.keep))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``main.py poll --once`` end to end under cProfile: process start, imports, the round, dedupe.

The bench's other profiles look at one stage at a time (the round inline in one thread, then
``run_dedupe`` alone); this one profiles the command as a user runs it, in its own process, so
the shares say where the wall time of ``poll --once`` goes. cProfile sees the main thread only:
the parse processes' work (parse, normalize, dedupe features) shows as the main thread waiting,
and their CPU is in the CPU column (the command and every process it reaped).

Standalone, to profile another checkout of the code with the same feeds (how the "before" was
made)::

    .venv/bin/python bench/ingest_cli_profile.py --feeds 26 --root /path/to/other/checkout
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest_runs import bench_env, cumulative_s, hottest, poll_summary, prepare_database, run_child  # noqa: E402

STAGES: tuple[tuple[str, str, str], ...] = (
    ("imports (importlib, wherever they happen)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("the poll command (main.py cmd_poll: the round, then dedupe)", "main.py", "cmd_poll"),
    ("dedupe (run.py run_dedupe)", "aggregator/dedupe/run.py", "run_dedupe"),
    (
        "— dedupe features before its transaction (run.py prepare_features)",
        "aggregator/dedupe/run.py",
        "prepare_features",
    ),
    ("— dedupe features in its transaction (run.py _features)", "aggregator/dedupe/run.py", "_features"),
    ("— clustering (cluster.py Clusterer.add)", "aggregator/dedupe/cluster.py", "add"),
    ("— feed entries (entries.py refresh_story_entries)", "aggregator/entries.py", "refresh_story_entries"),
)


def cli_profile(database_url: str, root: Path = ROOT, top: int = 15) -> str:
    """Profile ``main.py poll --once --quiet`` of ``root`` on a prepared database; a markdown note."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "poll.prof"
        cmd = [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(out),
            str(root / "main.py"),
            "poll",
            "--once",
            "--quiet",
        ]
        env = bench_env(database_url)
        env["PYTHONPATH"] = str(root)
        run = run_child(cmd, env, cwd=root)
        summary = poll_summary(run)
        stats = pstats.Stats(str(out))
    total = max(stats.total_tt, 1e-9)  # type: ignore[attr-defined]
    lines = [
        f"`main.py poll --once --quiet` under cProfile (main thread; parse and feature processes show as "
        f"waiting): {summary.inserted:,} items in {run.seconds:.1f} s wall, {run.cpu_s:.1f} CPU s with its "
        f"processes, peak RSS {run.peak_rss_mb:.0f} MB; profiled main thread {total:.1f} s.",
        "",
        "| stage (main thread) | seconds | share |",
        "|---|---:|---:|",
    ]
    for label, path, function in STAGES:
        seconds = cumulative_s(stats, path, function)
        lines.append(f"| {label} | {seconds:.2f} | {seconds / total:.0%} |")
    lines += hottest(stats, top)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=26)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose main.py is profiled")
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
            print(cli_profile(url, args.root.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

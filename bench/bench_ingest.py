"""Ingest benchmark: our end-to-end items/s against feedparser parse-only items/s, same feeds, same run.

Generates ``--feeds`` RSS 2.0 documents of ``--items`` entries each (about 140 KB per feed:
multilingual titles and HTML descriptions across the thirteen locales, links with ``utm_``
parameters, images, relative links), serves them from the project's loopback feed server on 127.0.0.1 in
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
goes to stdout, progress to stderr. The jobs live beside this entry point: ``ingest_feeds``
(generator), ``ingest_server`` (serving), ``ingest_runs`` (baselines and our runs), ``ingest_report``. ``--profile`` adds a serial per-stage breakdown and the
hottest functions (cProfile) of parse + normalize.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest_api import ApiLatency, api_latency_during_dedupe, dedupe_child, latency_lines  # noqa: E402
from ingest_cli_profile import cli_profile  # noqa: E402
from ingest_feeds import write_feeds  # noqa: E402
from ingest_report import findings, report  # noqa: E402
from ingest_runs import (  # noqa: E402
    BENCH_SCRIPT,
    BenchFailure,
    CliResult,
    Rate,
    bench_env,
    cli_rounds,
    dedupe_profile_child,
    feedparser_rate,
    import_profile,
    in_process_round,
    prepare_database,
    profile_child,
    reader_child,
    reader_rounds,
    round_child,
    run_child,
)
from ingest_server import feed_server  # noqa: E402

BEFORE_PROFILE = Path(__file__).with_name("ingest_dedupe_before.md")
BEFORE_COMMIT = "0d0c858"
CLI_BEFORE_PROFILE = Path(__file__).with_name("ingest_cli_profile_before.md")
BEFORE_COMMAND = "bench/bench_ingest.py --record-dedupe-profile bench/ingest_dedupe_before.md"


def log(message: str) -> None:
    print(f"[ingest] {message}", file=sys.stderr, flush=True)


def compile_project() -> None:
    """Write the bytecode of the project's packages (``python -m compileall``)."""
    import compileall

    for package in ("core", "sources", "aggregator", "api", "app"):
        compileall.compile_dir(ROOT / package, quiet=2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_round"]:
        round_child(argv[1], dedupe="--dedupe" in argv)
        return 0
    if argv[:1] == ["_profile"]:
        profile_child(argv[1])
        return 0
    if argv[:1] == ["_dedupe"]:
        dedupe_child(argv[1])
        return 0
    if argv[:1] == ["_reader"]:
        reader_child(argv[1], int(argv[2]), argv[3])
        return 0
    if argv[:1] == ["_dedupe_profile"]:
        dedupe_profile_child(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=200, help="number of feeds (default 200)")
    parser.add_argument("--items", type=int, default=50, help="items per feed (default 50)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 26 feeds × 50 items")
    parser.add_argument("--postgres", action="store_true", help="also run ours on a throwaway PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="add a per-stage breakdown and cProfile top")
    parser.add_argument(
        "--api-latency",
        action="store_true",
        help="p99 of /v1/feed idle and while a dedupe round of every item runs beside it (SQLite)",
    )
    parser.add_argument("--keep", type=Path, help="write the feeds to this directory and keep them")
    parser.add_argument(
        "--record-dedupe-profile",
        type=Path,
        metavar="FILE",
        help="only profile `run_dedupe` end to end and write the note to FILE (how the 'before' was made)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.feeds = min(args.feeds, 26)

    tmp = Path(tempfile.mkdtemp(prefix="babelwire-bench-ingest-"))
    feed_dir = args.keep or tmp / "feeds"
    feed_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.record_dedupe_profile:
            args.record_dedupe_profile.write_text(_dedupe_profile(args, tmp, feed_dir) + "\n")
            return 0
        return _run(args, tmp, feed_dir)
    except BenchFailure as e:
        print(f"bench_ingest: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dedupe_profile(args: argparse.Namespace, tmp: Path, feed_dir: Path, base_url: str | None = None) -> str:
    """``run_dedupe`` end to end under cProfile, after a poll round of the bench's feeds."""
    if base_url is None:
        write_feeds(feed_dir, args.feeds, args.items)
        with feed_server(feed_dir) as served:
            return _dedupe_profile(args, tmp, feed_dir, served)
    url = f"sqlite:///{tmp / 'dedupe-profile'}.sqlite"
    prepare_database(url, base_url, args.feeds)
    log("profiling run_dedupe end to end (cProfile)")
    run = run_child([sys.executable, str(BENCH_SCRIPT), "_dedupe_profile", url], bench_env(url))
    if run.code != 0:
        raise BenchFailure(f"profiled dedupe failed: {run.stderr.strip()[-300:]}")
    return run.stdout.strip()


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

    # As an install does (pip compiles the peer's modules to bytecode in site-packages): the
    # checkout's own modules are compiled once here, so no start compiles them again (a start
    # cannot write them when PYTHONDONTWRITEBYTECODE is set). `make venv` does the same.
    compile_project()
    start = run_child([sys.executable, str(ROOT / "main.py"), "--help"], dict(os.environ))
    ours: dict[str, Rate] = {}
    details: dict[str, dict[str, Any]] = {}
    cli: dict[str, CliResult] = {}
    profile = ""
    latency: ApiLatency | None = None
    with feed_server(feed_dir) as base_url:
        log("reader (the peer), workers=1 and workers=4, first update and second (all 304)")
        readers = reader_rounds(tmp, base_url, args.feeds)
        for r in readers:
            if r.first.items != expected or r.broken:
                notes.append(
                    f"reader workers={r.workers}: {r.first.items} of {expected} entries, {r.broken} feeds broken"
                )
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
                run = run_child([sys.executable, str(BENCH_SCRIPT), "_profile", url], bench_env(url))
                if run.code != 0:
                    raise BenchFailure(f"profiled round failed: {run.stderr.strip()[-300:]}")
                profile = "\n".join(
                    findings(ours["SQLite"], details["SQLite"], cli["SQLite"], fp_default, start)
                )
                profile += "\n\n" + run.stdout.strip()
                profile += "\n\n" + import_profile(bench_env(f"sqlite:///{tmp / 'cli'}.sqlite"))
                log("profiling main.py poll --once end to end (cProfile, every process and thread)")
                url = f"sqlite:///{tmp / 'cli-profile'}.sqlite"
                prepare_database(url, base_url, args.feeds)
                before_cli = (
                    CLI_BEFORE_PROFILE.read_text().strip()
                    if CLI_BEFORE_PROFILE.exists()
                    else "(not recorded)"
                )
                profile += (
                    "\n\n##### `poll --once` end to end, before this branch's changes\n\n"
                    f"{before_cli}\n\n##### `poll --once` end to end, now\n\n" + cli_profile(url)
                )
                before = BEFORE_PROFILE.read_text().strip() if BEFORE_PROFILE.exists() else "(not recorded)"
                profile += (
                    "\n\n##### `run_dedupe` end to end, before this branch's changes\n\n"
                    f"Recorded with `{BEFORE_COMMAND}` at commit {BEFORE_COMMIT} (kept in "
                    f"`bench/{BEFORE_PROFILE.name}`):\n\n{before}"
                    "\n\n##### `run_dedupe` end to end, now\n\n"
                    + _dedupe_profile(args, tmp, feed_dir, base_url)
                )
            if args.api_latency:
                from tests.livesite import free_port

                log("p99 of /v1/feed idle, then beside a dedupe round of every item")
                latency = api_latency_during_dedupe(tmp, f"sqlite:///{tmp / 'cli'}.sqlite", free_port())
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
            readers=readers,
            ours=ours,
            cli=cli,
            start_s=start.seconds,
            notes=notes,
        )
    )
    if latency is not None:
        print("\n".join(latency_lines(latency)) + "\n")
    if profile:
        print("#### Profile\n\n" + profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: run the benchmarks one after another and write ``BENCHMARKS.md``.

Each benchmark is its own script under ``bench/`` that prints a markdown section on stdout
(progress on stderr, passed through). They run sequentially, never side by side, since every
figure is a ratio against a baseline measured in the same run and a neighbour would skew it.

    .venv/bin/python bench/run_all.py [--only ingest|dedupe|api|greader|soak|eval ...] [--quick] [--output FILE]
                                      [--soak-minutes M]

A script that is missing is reported as such; a script that fails stops nothing else, but
``run_all`` then exits 1, names it, and leaves that section of ``BENCHMARKS.md`` as it was.
``--only`` rewrites just the chosen sections and keeps the others, so the file stays whole.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_OUTPUT = ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    title: str
    full: tuple[str, ...]
    """Arguments of the full run (``make bench``)."""
    quick: tuple[str, ...]
    """Arguments of the smoke run; flags the script does not list in ``--help`` are dropped."""


BENCHMARKS = (
    Benchmark(
        "ingest",
        "bench_ingest.py",
        "Ingest: end to end vs feedparser parse-only",
        full=("--postgres", "--profile", "--api-latency"),
        quick=("--quick", "--profile", "--api-latency"),
    ),
    Benchmark(
        "dedupe",
        "bench_dedupe.py",
        "Dedupe: clustering throughput",
        full=(),
        quick=("--quick", "--sizes", "1000", "3000"),
    ),
    Benchmark(
        "api",
        "bench_api.py",
        "API: mixed app traffic vs a pre-built-bytes route (wrk; SQLite 10k, PostgreSQL 100k stories)",
        full=(),
        quick=("--sqlite-stories", "2000", "--pg-stories", "5000", "--duration", "3"),
    ),
    Benchmark(
        "greader",
        "bench_greader.py",
        "Google Reader API: items/contents (150 ids), items/ids (1,000 refs) and unread-count next to /v1/feed "
        "(wrk; SQLite and PostgreSQL, 100k stories)",
        full=("--postgres",),
        quick=("--sqlite-stories", "3000", "--duration", "3", "--postgres"),
    ),
    Benchmark(
        "soak",
        "bench_soak.py",
        "Soak: 1,000 sources, 2 workers + 1 API on PostgreSQL; polling capacity",
        full=("--minutes", "30"),
        quick=("--minutes", "3", "--sources", "300"),
    ),
    Benchmark(
        "eval",
        "bench_eval.py",
        "Dedupe quality: labelled corpus through the real CLI (B-cubed, false merges, related recall)",
        full=(),
        quick=("--quick",),
    ),
)


@dataclass
class Outcome:
    bench: Benchmark
    command: list[str]
    code: int | None
    """None when the script does not exist."""
    seconds: float
    markdown: str


def supported_args(script: Path, wanted: Sequence[str]) -> list[str]:
    """Keep the flags (with their values) that the script's ``--help`` mentions."""
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    known = set(re.findall(r"--[a-z][a-z0-9-]*", shown.stdout))
    kept: list[str] = []
    keep = False
    for arg in wanted:
        if arg.startswith("--"):
            keep = arg in known
        if keep:
            kept.append(arg)
    return kept


def run_benchmark(bench: Benchmark, quick: bool, soak_minutes: float | None = None) -> Outcome:
    script = BENCH / bench.script
    rel = f"bench/{bench.script}"
    if not script.exists():
        return Outcome(bench, [rel], None, 0.0, "")
    args = supported_args(script, bench.quick) if quick else list(bench.full)
    if bench.name == "soak" and soak_minutes is not None:
        args = [a for a, b in zip(args, [None, *args[:-1]], strict=True) if "--minutes" not in (a, b)]
        args += ["--minutes", f"{soak_minutes:g}"]
    command = [sys.executable, str(script), *args]
    print(f"[run_all] {bench.name}: {shlex.join([rel, *args])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    shown = [".venv/bin/python", rel, *args]
    return Outcome(bench, shown, done.returncode, seconds, done.stdout.strip())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 2**20:.0f} GB RAM"
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {usable} ({cpu}{mem}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average at start {load}"
    )


def section(outcome: Outcome, when: str, quick: bool) -> str:
    bench = outcome.bench
    lines = [f"<!-- bench:{bench.name} -->", f"## {bench.title}", ""]
    if outcome.code is None:
        lines.append(f"`{outcome.command[0]}` is not in the tree yet; nothing measured.")
    else:
        lines += [
            f"Command: `{shlex.join(outcome.command)}` — {when}, {outcome.seconds:.0f} s"
            + (" (**quick smoke run: reduced sizes, not the reference figures**)" if quick else ""),
            "",
            outcome.markdown,
        ]
    lines.append(f"<!-- /bench:{bench.name} -->")
    return "\n".join(lines)


HEADER = """# Benchmarks

Written by `make bench` (`.venv/bin/python bench/run_all.py`); do not edit by hand.

Machines are noisy, so every speed below is a **ratio against a baseline measured in the same
run** on the same machine (feedparser on the same feeds, a pre-built-bytes route of the same
app, …); absolute numbers sit beside the ratios for context only, and the figures quoted from
`../shared/TARGETS.md` (e.g. `reader`'s ~1,300 items/s) are published references, not measured
here. The benchmarks run one after another, never side by side. Targets: `../shared/TARGETS.md`.
"""


def compose(previous: str, sections: dict[str, str], header_lines: list[str]) -> str:
    """The new file: a fresh header, fresh sections for what ran, the old text for the rest."""
    old: dict[str, str] = {}
    for found in re.finditer(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", previous, re.S):
        old[found.group(1)] = found.group(0)
    parts = [HEADER, *header_lines, ""]
    for bench in BENCHMARKS:
        text = sections.get(bench.name) or old.get(bench.name)
        if text:
            parts += [text, ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and write BENCHMARKS.md.")
    parser.add_argument(
        "--only",
        action="append",
        choices=[b.name for b in BENCHMARKS],
        help="run just this benchmark (repeatable); the other sections of the file are kept",
    )
    parser.add_argument(
        "--quick",
        nargs="*",
        choices=[b.name for b in BENCHMARKS],
        help="smoke run with reduced sizes: of every benchmark, or of the ones named",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: BENCHMARKS.md")
    parser.add_argument(
        "--soak-minutes", type=float, default=None, help="length of the soak (default 30; quick: 3)"
    )
    args = parser.parse_args(argv)

    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    about_machine = machine()
    invoked = shlex.join(
        [".venv/bin/python", "bench/run_all.py", *(argv if argv is not None else sys.argv[1:])]
    )
    quick = {
        b.name for b in BENCHMARKS if args.quick is not None and (not args.quick or b.name in args.quick)
    }
    outcomes = [run_benchmark(b, b.name in quick, args.soak_minutes) for b in chosen]

    failed = [o for o in outcomes if o.code not in (None, 0)]
    sections = {
        o.bench.name: section(o, when, o.bench.name in quick) for o in outcomes if o.code in (None, 0)
    }
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header_lines = [
        f"Last run: {when}, `{invoked}` (`make bench` runs it with no arguments); "
        f"ran: {', '.join(o.bench.name for o in outcomes)}.",
        "",
        f"Machine: {about_machine}, at the end {load_end}.",
    ]
    if failed:
        names = ", ".join(o.bench.name for o in failed)
        header_lines += [
            "",
            f"**Failed in this run: {names}** — those sections, if present, are from an earlier run.",
        ]
    previous = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(compose(previous, sections, header_lines), encoding="utf-8")
    print(f"[run_all] wrote {args.output}", file=sys.stderr)

    for o in outcomes:
        if o.code is None:
            print(f"[run_all] {o.bench.name}: {o.command[0]} not found, skipped", file=sys.stderr)
    for o in failed:
        print(
            f"[run_all] FAILED: {o.bench.name} (`{shlex.join(o.command)}`) exited {o.code} after "
            f"{o.seconds:.0f} s; its section of {args.output.name} was left as it was (see its stderr above)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest bench report: the findings and the markdown table, every speed a ratio to a baseline of the same run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from ingest_runs import CliResult, Rate, ReaderResult, Run  # noqa: E402

RSS_TARGET = 4.0
"""Peak RSS of ``poll --once`` at most this many times reader's (TARGETS.md)."""


def findings(rate: Rate, detail: dict[str, Any], cli: CliResult, fp_default: Rate, start: Run) -> list[str]:
    """The reading of the SQLite figures, in words, for the Profile note."""
    lines = []
    if rate.cpu_s:
        lines.append(
            f"- The round took {rate.cpu_s:.0f} CPU s in {rate.seconds:.0f} s wall "
            f"({rate.cpu_s / rate.seconds:.2f} cores busy of {os.cpu_count()}, its parse processes counted): "
            "parse, normalize and dedupe features run in one process per core, fetch and store in the round's "
            "own; on a shared machine the cores it gets are fewer."
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


def best_reader(readers: list[ReaderResult]) -> tuple[ReaderResult, ReaderResult]:
    """Reader's best first update and best second update (each the faster of workers=1 and 4)."""
    first = min(readers, key=lambda r: r.first.seconds)
    second = min(readers, key=lambda r: r.second.seconds)
    return first, second


def report(
    *,
    feeds: int,
    items: int,
    total_bytes: int,
    fp_default: Rate,
    fp_fast: Rate,
    readers: list[ReaderResult],
    ours: dict[str, Rate],
    cli: dict[str, CliResult],
    start_s: float,
    notes: list[str],
) -> str:
    avg_kb = total_bytes / feeds / 1024
    peer, peer_second = best_reader(readers)
    ref = peer.first
    lines = [
        f"{feeds} RSS 2.0 feeds × {items} items = {feeds * items:,} items, {avg_kb:.0f} KB per feed on average "
        f"({total_bytes / 2**20:.1f} MB), thirteen locales, served over loopback by a separate process. "
        f"The peer is `reader` 3.26 run in this same bench on the same feeds (best of workers=1 and 4: "
        f"workers={peer.workers}, {fmt_rate(ref)} items/s); every ratio is against it.",
        "",
        "| run | items | wall s | items/s | **speed ÷ reader** | CPU s | CPU ÷ reader | peak RSS MB | RSS ÷ reader |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, rate: Rate, bold: bool = False) -> None:
        ratio = f"{rate.per_s / ref.per_s:.2f}"
        if bold:
            ratio = f"**{ratio}**"
        cpu = f"{rate.cpu_s:.2f}" if rate.cpu_s else "—"
        cpu_ratio = f"{rate.cpu_s / ref.cpu_s:.2f}" if rate.cpu_s and ref.cpu_s else "—"
        rss = f"{rate.peak_rss_mb:.0f}" if rate.peak_rss_mb is not None else "—"
        rss_ratio = (
            f"{rate.peak_rss_mb / ref.peak_rss_mb:.2f}" if rate.peak_rss_mb and ref.peak_rss_mb else "—"
        )
        lines.append(
            f"| {name} | {rate.items:,} | {rate.seconds:.2f} | {fmt_rate(rate)} | {ratio} | {cpu} | {cpu_ratio} "
            f"| {rss} | {rss_ratio} |"
        )

    for r in readers:
        row(f"reader `update_feeds(workers={r.workers})`, process start included", r.first)
    for db, result in cli.items():
        row(
            f"ours, `main.py poll --once --quiet` end to end (process start + round + dedupe, every item in a "
            f"story), {db}",
            result.first,
            bold=True,
        )
    for db, rate in ours.items():
        row(f"ours, in-process `poll_round` (fetch→store, no dedupe), {db}", rate)
    row("feedparser parse-only, defaults (no fetch, no store)", fp_default)
    row("feedparser parse-only, sanitize_html=False, resolve_relative_uris=False", fp_fast)

    lines += [
        "",
        f"Targets (TARGETS.md, issue 14): `poll --once` end to end ≥ 1.0× reader now, ≥ 2× as the goal; peak RSS "
        f"≤ {RSS_TARGET:g}× reader's. CPU ÷ reader: lower is better (it counts the process and the workers it "
        "reaped: our parse and feature-extraction processes included). The loopback server's CPU is counted for "
        "neither.",
        "",
        "| second poll, nothing changed (process start included) | feeds | 304s | wall s | **wall ÷ reader** "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in readers:
        lines.append(
            f"| reader `update_feeds(workers={r.workers}, scheduled=False)` | {feeds} | — | {r.second.seconds:.2f} "
            f"| {r.second.seconds / peer_second.second.seconds:.2f} | {r.second.peak_rss_mb:.0f} |"
        )
    for db, result in cli.items():
        s = result.second_summary
        lines.append(
            f"| `main.py poll --once --all --quiet`, {db} | {s.polled} | {s.not_modified} "
            f"| {result.second.seconds:.2f} | **{result.second.seconds / peer_second.second.seconds:.2f}** "
            f"| {result.second.peak_rss_mb:.0f} |"
        )
    lines += [
        "",
        f"Process start alone (`main.py --help`): {start_s:.2f} s. Lower is better in this table; the target is "
        "≤ 1.00 (as fast as reader's best, workers=1 or 4).",
    ]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"

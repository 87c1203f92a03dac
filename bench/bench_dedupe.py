#!/usr/bin/env python3
"""Clustering throughput: feature extraction + clustering of 10k, 30k and 100k items, one process.

    .venv/bin/python bench/bench_dedupe.py [--sizes 10000 30000 100000] [--corpus eval/tune ...]

The labelled corpus is expanded into fresh stories: each copy gets new ids, a new day (copies
spread over weeks at a constant ~700 items a day), outlets of its own and its digits permuted, so copies carry
other figures (like a daily template filled with new numbers) and stay other stories. Prints a
markdown table: items, wall and CPU seconds, items/s, stories, peak RSS of the process so far.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aggregator.dedupe.cluster import Clusterer  # noqa: E402
from aggregator.dedupe.corpus import load_corpus  # noqa: E402
from aggregator.dedupe.features import DedupeDoc, Extractor  # noqa: E402

PER_DAY = 700


def expand(base: list[DedupeDoc], n: int) -> list[DedupeDoc]:
    """``n`` docs made from copies of ``base``, in publication order."""
    copies = -(-n // len(base))
    days = max(1, n // PER_DAY)
    start = min(d.published_at for d in base)
    out: list[DedupeDoc] = []
    for k in range(copies):
        perm = list("0123456789")
        random.Random(k).shuffle(perm)
        digits = str.maketrans("0123456789", "".join(perm))
        shift = timedelta(days=(k * days) / copies) - (min(d.published_at for d in base) - start)
        for d in base:
            if len(out) == n:
                break
            out.append(
                replace(
                    d,
                    id=len(out) + 1,
                    outlet=f"{d.outlet}{k % 50}",
                    url=d.url + f"-{k}",
                    guid=None,
                    title=d.title.translate(digits),
                    text=d.text.translate(digits),
                    published_at=d.published_at + shift,
                    image=f"{d.image}?copy={k}" if d.image else None,
                )
            )
    out.sort(key=lambda d: (d.published_at, d.id))
    return out


def run(docs: list[DedupeDoc]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, stories) of extracting and clustering ``docs``."""
    extractor = Extractor()
    clusterer = Clusterer()
    started, cpu = time.perf_counter(), time.process_time()
    for d in docs:
        clusterer.add(extractor.features(d))
    return time.perf_counter() - started, time.process_time() - cpu, len(set(clusterer.story_of.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    ap.add_argument("--corpus", nargs="+", default=["eval/tune", "../shared/contract/testdata"])
    a = ap.parse_args()
    base = [d.doc for c in a.corpus for d in load_corpus(ROOT / c)]
    print(f"base corpus: {len(base)} versions")
    print("| items | seconds | CPU seconds | items/s | stories | peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in a.sizes:
        docs = expand(base, n)
        elapsed, cpu, stories = run(docs)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {n:,} | {elapsed:.1f} | {cpu:.1f} | {n / elapsed:,.0f} | {stories:,} | {rss:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Dedupe quality on the labelled corpora, as a table.

    .venv/bin/python eval/run_eval.py [--pure] [--dirs eval/tune eval/test ...] [--modes blind hints rehost]

Default: end to end through the real CLI — ``../shared/contract/check DIR [--hints|--rehost-images]``
for each corpus directory and feed mode (it serves the corpus as RSS on 127.0.0.1, polls, runs
dedupe and scores ``stories export``). ``--pure`` skips feeds and database: the corpus is turned
into ``DedupeDoc``s the way the feeds would publish them, clustered in memory, and scored with
the contract's ``score.py``. Prints B-cubed P/R/F1, false-merge rate and related recall, and
related precision (of the related links, the share joining stories of one event; from the
in-memory clustering, since the contract's check keeps its export to itself).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT.parent / "shared" / "contract"
sys.path.insert(0, str(ROOT))

from aggregator.dedupe.cluster import Clusterer  # noqa: E402
from aggregator.dedupe.corpus import load_corpus, truth_of  # noqa: E402
from aggregator.dedupe.features import Extractor  # noqa: E402
from aggregator.dedupe.policy import DEFAULT, Thresholds  # noqa: E402

MODES = {"blind": [], "hints": ["--hints"], "rehost": ["--rehost-images"]}
LINE = re.compile(
    r"B3-F1 (?P<f1>[\d.]+) \(P (?P<p>[\d.]+) R (?P<r>[\d.]+)\) false-merge (?P<fm>[\d.]+)% "
    r"related-recall (?P<rr>\d+)%"
)


def load_score() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contract_score", CONTRACT / "score.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pure_export(directory: Path, mode: str, thresholds: Thresholds = DEFAULT) -> tuple[list[dict], dict]:
    """Cluster a corpus in memory; return (export-shaped stories, truth)."""
    docs = load_corpus(directory, hints=mode == "hints", rehost_images=mode == "rehost")
    extractor = Extractor(thresholds=thresholds)
    clusterer = Clusterer(thresholds)
    for d in docs:
        clusterer.add(extractor.features(d.doc))
    by_story: dict[int, list[str]] = {}
    for d in docs:
        by_story.setdefault(clusterer.story_of[d.doc.id], []).append(d.doc.url)
    stories = [
        {
            "id": key,
            "members": [{"url": u} for u in urls],
            "related": [o for o, _ in clusterer.related_of(key)],
        }
        for key, urls in by_story.items()
    ]
    return stories, truth_of(docs)


def related_precision(stories: list[dict], truth: dict) -> tuple[float, int]:
    """(share of related links that join stories of one true event, number of links): each
    exported story stands for the event most of its members belong to; a link counts once."""
    event_of_item = {u: truth["stories"][s] for u, s in truth["items"].items()}
    event: dict[str, str | None] = {}
    for st in stories:
        events = Counter(event_of_item.get(m["url"]) for m in st["members"])
        event[str(st["id"])] = events.most_common(1)[0][0] if events else None
    links = {frozenset((str(st["id"]), str(r))) for st in stories for r in st.get("related") or []}
    links = {link for link in links if len(link) == 2}
    right = sum(len({event.get(x) for x in link}) == 1 for link in links)
    return (right / len(links) if links else 1.0), len(links)


def pure_scores(directory: Path, mode: str, thresholds: Thresholds = DEFAULT) -> dict[str, Any]:
    stories, truth = pure_export(directory, mode, thresholds)
    result: dict[str, Any] = load_score().score(stories, truth)
    result["related_precision"], result["related_links"] = related_precision(stories, truth)
    return result


def cli_scores(directory: Path, mode: str) -> dict[str, Any] | str:
    run = subprocess.run(
        [str(CONTRACT / "check"), str(directory), *MODES[mode]], cwd=ROOT, capture_output=True, text=True
    )
    m = LINE.search(run.stdout)
    if not m:
        return (
            (run.stdout + run.stderr).strip().splitlines()[-1]
            if (run.stdout + run.stderr).strip()
            else "failed"
        )
    return {
        "b3_f1": float(m["f1"]),
        "b3_precision": float(m["p"]),
        "b3_recall": float(m["r"]),
        "false_merge_rate": float(m["fm"]) / 100,
        "related_recall": float(m["rr"]) / 100,
        "problems": [line for line in run.stdout.splitlines() if line.startswith("PROBLEM")],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pure", action="store_true", help="in memory, without feeds or database")
    ap.add_argument("--dirs", nargs="+", default=["eval/tune", "eval/test"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    a = ap.parse_args()
    print(
        "| corpus | mode | path | B³ P | B³ R | B³ F1 | false merges | related recall "
        "| related precision (links, in memory) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in a.dirs:
        directory = (ROOT / d) if not Path(d).is_absolute() else Path(d)
        for mode in a.modes:
            pure = pure_scores(directory, mode)
            s = pure if a.pure else cli_scores(directory, mode)
            path = "pure" if a.pure else "CLI"
            if isinstance(s, str):
                print(f"| {d} | {mode} | {path} | failed: {s} ||||||")
                continue
            print(
                f"| {d} | {mode} | {path} | {s['b3_precision']:.3f} | {s['b3_recall']:.3f} | {s['b3_f1']:.3f} "
                f"| {s['false_merge_rate']:.1%} | {s['related_recall']:.0%} "
                f"| {pure['related_precision']:.1%} ({pure['related_links']}) |"
            )
            for problem in s.get("problems") or []:
                print(f"|  | {problem} |||||||")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a worker does about its memory between rounds (``aggregator.memory``): freed heap that
glibc keeps (holes between live blocks, which ``free`` cannot give back) is handed back by
``malloc_trim``, measured on this process's own resident size."""

from __future__ import annotations

import gc
import threading

from aggregator.memory import heap_usage, malloc_trim, rollup_kb

MB = 2**20


def _rss() -> int:
    return rollup_kb()["Rss"] * 1024


def _fragment(keep: list[bytes]) -> None:
    """100 MB of 4 KB blocks (glibc's, not Python's small-object arenas), one in 64 kept alive so
    the freed rest is holes, not a heap top that ``free`` would give back by itself."""
    blocks = [bytearray(4096) for _ in range(25_000)]
    keep.extend(bytes(b) for b in blocks[::64])
    del blocks
    gc.collect()


def test_malloc_trim_gives_back_the_heap_a_round_freed() -> None:
    keep: list[bytes] = []
    worker = threading.Thread(target=_fragment, args=(keep,))  # a worker thread's arena, as in a round
    worker.start()
    worker.join()
    used, free = heap_usage() or (0, 0)
    assert free >= 50 * MB, (used / MB, free / MB)  # what glibc kept after the round
    before = _rss()
    assert malloc_trim()
    after = _rss()
    assert before - after >= 50 * MB, (before / MB, after / MB)
    assert len(keep) == 25_000 // 64 + 1

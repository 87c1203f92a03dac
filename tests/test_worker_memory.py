"""What a worker does about its memory between rounds (``aggregator.memory``): freed heap that
glibc keeps (holes between live blocks, which ``free`` cannot give back) is handed back by
``malloc_trim``, measured on this process's own resident size."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import threading

from aggregator.fetch import Fetcher
from aggregator.memory import heap_usage, malloc_trim, rollup_kb
from aggregator.settings import Settings
from sources.feedserver import FeedServer

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


def test_the_fetcher_forgets_a_host_once_its_fetches_are_done() -> None:
    """A worker polls a thousand hosts for weeks: its per-host limits hold only the hosts being
    fetched, not every host it ever saw (loopback servers on five addresses of 127/8)."""
    servers = [FeedServer(host=f"127.0.0.{n}") for n in range(1, 6)]
    with contextlib.ExitStack() as stack:
        for server in servers:
            server.routes["/feed.xml"] = lambda h: h.reply(200, b"<rss/>")
            stack.enter_context(server)

        async def go() -> tuple[list[int], int, int]:
            fetcher = Fetcher(Settings(allow_private_feeds=True, per_host_concurrency=2))
            try:
                urls = [f"{s.base_url}/feed.xml" for s in servers for _ in range(4)]
                pending = [asyncio.ensure_future(fetcher.fetch(u)) for u in urls]
                await asyncio.sleep(0)  # every fetch has entered (or waits for) its host's slot
                during = len(fetcher._host_slots)
                results = await asyncio.gather(*pending)
                return [r.status or 0 for r in results], during, len(fetcher._host_slots)
            finally:
                await fetcher.aclose()

        statuses, during, after = asyncio.run(go())
    assert statuses == [200] * 20
    assert during == 5
    assert after == 0


ROUND = """
import gc, os, sys
from aggregator.memory import exec_with_system_malloc, malloc_trim, pymalloc_stats, rollup_kb
print(os.getpid(), os.environ.get("PYTHONMALLOC", "-"), flush=True)
exec_with_system_malloc()
def rss(): return rollup_kb()["Rss"] // 1024
keep = []
before = rss()
# One round's small objects (parsed entries' strings and tuples), one in 64 outliving the round.
objects = [(str(n), n * 2) for n in range(1_000_000)]
keep.extend(objects[::64])
del objects
gc.collect()
malloc_trim()
print("held", rss() - before, pymalloc_stats().get("arenas", 0), len(keep), flush=True)
"""


def _round(env: dict[str, str]) -> tuple[list[str], int, int]:
    out = subprocess.run(
        [sys.executable, "-c", ROUND], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    starts = [line for line in out if line and not line.startswith("held")]
    _, held, arenas, _ = next(line for line in out if line.startswith("held")).split()
    return starts, int(held), int(arenas)


def test_a_worker_runs_on_glibc_malloc_so_the_trim_reaches_a_rounds_small_objects() -> None:
    """``exec_with_system_malloc`` restarts the process (same pid) on glibc's allocator: the small
    objects a round freed around the few that outlive it go back to the system with the trim,
    where Python's own allocator keeps every 1 MiB arena that still holds one of them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "BABELWIRE_MALLOC_TRIM")}
    starts, held_malloc, arenas_malloc = _round(env)
    pid = starts[0].split()[0]
    assert starts == [f"{pid} -", f"{pid} malloc"]  # the same process, run again on malloc
    assert arenas_malloc == 0
    starts, held_pymalloc, arenas_pymalloc = _round(dict(env, BABELWIRE_MALLOC_TRIM="0"))
    assert len(starts) == 1  # trimming off: no restart, Python's allocator
    assert arenas_pymalloc >= 50  # the arenas the survivors pin
    assert held_pymalloc - held_malloc >= 40, (held_pymalloc, held_malloc)

"""What a worker does about its memory between rounds (``aggregator.memory``): freed heap that
glibc keeps (holes between live blocks, which ``free`` cannot give back) is handed back by
``malloc_trim``, measured on this process's own resident size."""

from __future__ import annotations

import asyncio
import contextlib
import gc
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

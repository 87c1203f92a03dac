"""Process pools that die with the process that made them.

Both pools (parse/extraction in :mod:`aggregator.poll`, extraction in
:mod:`aggregator.dedupe.pool`) start their workers from a fork server (safe beside the event
loop's and the store's threads). When the owning process dies without shutting its pool down
(``kill -9``, the OOM killer), nothing tells those processes: each worker holds both ends of its
own call queue, so it waits for work forever, and the fork server and the resource tracker wait
for their children. Under systemd or compose the cgroup ends them; started by hand or by a test,
they would stay. So every worker watches the pid that made its pool and exits when it is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

OWNER_CHECK_S = 1.0
"""How often a pool worker checks that the process that made its pool is alive."""


def forkserver_pool(
    workers: int,
    *,
    preload: Sequence[str] = (),
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes from a fork server (``preload``: modules it imports once),
    each running ``initializer(*initargs)`` and ending itself if this process dies."""
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start_worker(owner: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    threading.Thread(target=_watch_owner, args=(owner,), name="owner-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _watch_owner(owner: int) -> None:
    while True:
        time.sleep(OWNER_CHECK_S)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, but another user's: the pid was reused — ours is gone
            os._exit(0)

"""Feature extraction in worker processes: the caller consumes a batch while later ones extract."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aggregator.dedupe.features import DedupeDoc, Extractor, Features


def extract_in_processes(
    extractor: Extractor, docs: Iterable[DedupeDoc], workers: int, chunk: int
) -> Iterator[Features]:
    """``extractor.features`` of every doc, in order, extracted by ``workers`` processes ``chunk``
    docs at a time; at most two batches per worker wait to be consumed."""
    batches = _batched(docs, chunk)
    # forkserver, as the parse pool: the worker calls this from a thread, and forking a
    # process that runs threads can copy a held lock.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_worker_init, initargs=(extractor,)
    ) as pool:
        pending: deque[Future[list[Features]]] = deque()
        for batch in batches:
            pending.append(pool.submit(_worker_features, batch))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


_WORKER_EXTRACTOR: list[Extractor] = []


def _worker_init(extractor: Extractor) -> None:
    _WORKER_EXTRACTOR[:] = [extractor]


def _worker_features(docs: list[DedupeDoc]) -> list[Features]:
    return [_WORKER_EXTRACTOR[0].features(d) for d in docs]


def _batched(docs: Iterable[DedupeDoc], size: int) -> Iterator[list[DedupeDoc]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch

"""Feature extraction in worker processes: the caller consumes a batch while later ones extract."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

from aggregator.procpool import forkserver_pool

if TYPE_CHECKING:
    from aggregator.dedupe.features import DedupeDoc, Extractor, Features

R = TypeVar("R")


def extract_encoded(
    extractor: Extractor,
    docs: Iterable[DedupeDoc],
    workers: int,
    encode: Callable[[Features], bytes],
    chunk: int = 500,
) -> Iterator[tuple[Features, bytes]]:
    """Each doc's features and their stored form (``encode``: ``codec.encode``, passed in so this
    module stays below the codec), in order: with ``workers`` > 1 both made in worker processes,
    so the caller (who stores the blobs) does neither."""
    if workers <= 1:
        for doc in docs:
            f = extractor.features(doc)
            yield f, encode(f)
        return
    yield from _in_processes(extractor, docs, workers, chunk, functools.partial(_worker_encoded, encode))


def extract_in_processes(
    extractor: Extractor, docs: Iterable[DedupeDoc], workers: int, chunk: int
) -> Iterator[Features]:
    """``extractor.features`` of every doc, in order, extracted by ``workers`` processes ``chunk``
    docs at a time; at most two batches per worker wait to be consumed."""
    yield from _in_processes(extractor, docs, workers, chunk, _worker_features)


def _in_processes(
    extractor: Extractor,
    docs: Iterable[DedupeDoc],
    workers: int,
    chunk: int,
    job: Callable[[list[DedupeDoc]], list[R]],
) -> Iterator[R]:
    batches = _batched(docs, chunk)
    # forkserver, as the parse pool: the worker calls this from a thread, and forking a
    # process that runs threads can copy a held lock.
    with forkserver_pool(workers, initializer=_worker_init, initargs=(extractor,)) as pool:
        pending: deque[Future[list[R]]] = deque()
        for batch in batches:
            pending.append(pool.submit(job, batch))
            if len(pending) > 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


_WORKER_EXTRACTOR: list[Extractor] = []


def _worker_init(extractor: Extractor) -> None:
    _WORKER_EXTRACTOR[:] = [extractor]


def _worker_features(docs: list[DedupeDoc]) -> list[Features]:
    return [_WORKER_EXTRACTOR[0].features(d) for d in docs]


def _worker_encoded(
    encode: Callable[[Features], bytes], docs: list[DedupeDoc]
) -> list[tuple[Features, bytes]]:
    out = []
    for d in docs:
        f = _WORKER_EXTRACTOR[0].features(d)
        out.append((f, encode(f)))
    return out


def _batched(docs: Iterable[DedupeDoc], size: int) -> Iterator[list[DedupeDoc]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch

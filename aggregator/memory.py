"""A worker's memory between rounds: giving freed heap back, and where it goes (a debug probe).

A worker's live Python heap is flat from round to round, but its resident size grew 50-120 %
over a soak: glibc keeps what a round freed (parsed feeds, features, result rows) in its
per-thread arenas and reuses it badly across the event loop's, the store's and dedupe's threads.
So a worker caps glibc at ``ARENA_MAX`` arenas (:func:`limit_arenas`, at start) and hands free
pages back after every round that stored or deduped something (:func:`malloc_trim`).
``BABELWIRE_MALLOC_TRIM=0`` turns both off (to measure what they save).

``BABELWIRE_MEMORY_TRACE=DIR`` makes a worker write, after a round at most every
``MEMORY_TRACE_EVERY_S``, one block to ``DIR/worker-PID.log``: RSS and anonymous memory from
``/proc/self/smaps_rollup``, glibc's heap (bytes in use, bytes free inside its arenas), what
``tracemalloc`` sees the Python heap hold, and the 12 source lines whose Python allocations grew
most since the first snapshot. Python-heap growth shows in the tracemalloc lines; native growth or
fragmentation shows as RSS or glibc "free" growing while the traced size stays flat. Off (the
default) it costs one attribute test per round.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import time
import tracemalloc
from pathlib import Path

MEMORY_TRACE_EVERY_S = 60.0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallinfo2.restype = _Mallinfo2
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim or read
        return None
    return libc


_LIBC = _libc()


ARENA_MAX = 2
_M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter number of ``M_ARENA_MAX``."""


def trimming() -> bool:
    """Whether this process caps its arenas and trims after rounds (``BABELWIRE_MALLOC_TRIM``)."""
    return _LIBC is not None and os.environ.get("BABELWIRE_MALLOC_TRIM", "1") != "0"


def limit_arenas(count: int = ARENA_MAX) -> bool:
    """At most ``count`` glibc arenas for the threads started from now on (glibc only)."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, count))


def malloc_trim() -> bool:
    """Give the heap's free pages back to the system (glibc); False where there is no glibc."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


def heap_usage() -> tuple[int, int] | None:
    """glibc's (bytes in use, bytes free in its arenas), or None where there is no glibc."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def rollup_kb() -> dict[str, int]:
    """``/proc/self/smaps_rollup``'s fields in kB (empty off Linux)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


class MemoryTrace:
    """The probe ``BABELWIRE_MEMORY_TRACE`` turns on (see the module docstring)."""

    def __init__(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / f"worker-{os.getpid()}.log"
        self.started = time.monotonic()
        self.last = 0.0
        self.rounds = 0
        self.first: tracemalloc.Snapshot | None = None
        tracemalloc.start(1)

    @classmethod
    def from_env(cls) -> MemoryTrace | None:
        folder = os.environ.get("BABELWIRE_MEMORY_TRACE")
        return cls(folder) if folder else None

    def after_round(self) -> None:
        self.rounds += 1
        now = time.monotonic()
        if now - self.last < MEMORY_TRACE_EVERY_S:
            return
        self.last = now
        gc.collect()
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        traced, _peak = tracemalloc.get_traced_memory()
        roll = rollup_kb()
        heap = heap_usage() or (0, 0)
        lines = [
            f"t={now - self.started:.0f}s rounds={self.rounds} rss={roll.get('Rss', 0) / 1024:.1f}MB "
            f"anon={roll.get('Anonymous', 0) / 1024:.1f}MB traced={traced / 2**20:.1f}MB "
            f"glibc_used={heap[0] / 2**20:.1f}MB glibc_free={heap[1] / 2**20:.1f}MB "
            f"blocks={__import__('sys').getallocatedblocks()} gc_objects={len(gc.get_objects())}"
        ]
        if self.first is None:
            self.first = snap
        else:
            for stat in snap.compare_to(self.first, "lineno")[:12]:
                lines.append(f"    {stat}")
        with self.path.open("a") as f:
            f.write("\n".join(lines) + "\n")

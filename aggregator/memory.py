"""A worker's memory between rounds: giving freed heap back, and where it goes (a debug probe).

A worker's live Python heap is flat from round to round, but its resident size grew over a soak.
Two allocators keep what a round freed (parsed feeds, features, result rows): glibc, in its
per-thread arenas, reused badly across the event loop's, the store's and dedupe's threads; and
Python's small-object allocator (pymalloc), which keeps every 1 MiB arena that still holds one
live object (measured: 115 arenas held for 42 MB of objects, most of them free). So
``main.py worker`` restarts itself on glibc's ``malloc`` for every object
(:func:`exec_with_system_malloc`; ``serve`` starts its scheduler process on it,
:func:`spawning_on_system_malloc`), caps glibc at ``ARENA_MAX`` arenas (:func:`limit_arenas`, at
start) and hands free pages back after a round that polled something (:func:`malloc_trim`).
``BABELWIRE_MALLOC_TRIM=0`` turns all three off (to measure what they save).

``BABELWIRE_MEMORY_TRACE=DIR`` makes a worker write, after a round at most every
``MEMORY_TRACE_EVERY_S``, one line to ``DIR/worker-PID.log``: RSS and anonymous memory from
``/proc/self/smaps_rollup``, glibc's heap (bytes in use, bytes free inside its arenas), pymalloc's
arenas (held, high-water mark) and the bytes in its blocks, and resident anonymous memory by kind
of mapping (:func:`anon_mappings_kb`). Native growth or fragmentation shows as RSS or glibc
"free" growing while the bytes in use stay flat; pymalloc fragmentation as arenas held growing
while its bytes in use stay flat. ``BABELWIRE_MEMORY_TRACE_PYTHON=1`` adds what ``tracemalloc``
sees and the 12 source lines whose Python allocations grew most since the first snapshot (it
slows the worker down and adds memory of its own). Off (the default) the probe costs one
attribute test per round.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
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


def wants_system_malloc() -> bool:
    """Whether a worker's interpreter should start with ``PYTHONMALLOC=malloc``: trimming is on and
    the variable is unset (set, it is the operator's choice and kept).

    Python's own small-object allocator keeps a 1 MiB arena as long as one object in it lives, and
    a round's objects (parsed entries, features, result rows) are spread over many arenas among
    longer-lived ones: measured, a worker held 115-130 arenas for 42 MB of objects, and ``malloc_trim``
    cannot give any of it back. With glibc's ``malloc`` for every object, the trim after a round
    reaches all of it."""
    return trimming() and "PYTHONMALLOC" not in os.environ


def exec_with_system_malloc() -> None:
    """Run this process again (``exec``: the same pid, the same command line) with
    ``PYTHONMALLOC=malloc`` when :func:`wants_system_malloc`; return only otherwise. Call before
    any thread starts (``main.py worker`` does, first thing)."""
    if not wants_system_malloc():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], dict(os.environ, PYTHONMALLOC="malloc"))


@contextlib.contextmanager
def spawning_on_system_malloc() -> Iterator[bool]:
    """Interpreters started inside (``serve``'s scheduler process, spawned: a fresh ``python``
    that inherits this environment) run on glibc's ``malloc`` when :func:`wants_system_malloc`,
    as ``main.py worker`` does by :func:`exec_with_system_malloc`; this process keeps its own
    allocator (the variable is read at start only, and is taken out again on leaving). Yields
    whether it was set."""
    if not wants_system_malloc():
        yield False
        return
    os.environ["PYTHONMALLOC"] = "malloc"
    try:
        yield True
    finally:
        os.environ.pop("PYTHONMALLOC", None)


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


def pymalloc_stats() -> dict[str, int]:
    """Python's small-object allocator (pymalloc): its arenas (1 MiB each, mmapped, handed back
    only when wholly empty, which ``malloc_trim`` cannot change) and the bytes in blocks in use,
    from ``sys._debugmallocstats()`` (which writes to file descriptor 2: redirected here for the
    call, so a line another thread logs in that instant lands in the parse and is ignored)."""
    out: dict[str, int] = {}
    keys = {
        "# arenas allocated total": "arenas_total",
        "# arenas reclaimed": "arenas_reclaimed",
        "# arenas highwater mark": "arenas_highwater",
        "# arenas allocated current": "arenas",
        "# bytes in allocated blocks": "bytes_in_blocks",
        "# bytes in available blocks": "bytes_free_in_pools",
    }
    with tempfile.TemporaryFile("w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp:
            key, sep, value = line.partition("=")
            name = keys.get(key.strip())
            if sep and name is not None:
                with contextlib.suppress(ValueError):
                    out[name] = int(value.strip().replace(",", ""))
    return out


def anon_mappings_kb() -> dict[str, int]:
    """Resident anonymous memory by kind of mapping, from ``/proc/self/smaps`` (kB): ``heap`` (the
    main glibc arena, brk), ``big`` (anonymous mappings of 32 MiB or more: other glibc arenas'
    64 MiB heaps), ``small`` (the rest: pymalloc arenas, large ``malloc`` blocks glibc mmapped,
    thread stacks), and ``mappings`` (how many anonymous mappings)."""
    out = {"heap": 0, "big": 0, "small": 0, "mappings": 0}
    kind: str | None = None
    with contextlib.suppress(OSError), open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(maxsplit=6)
            if "-" in first[0] and not first[0].endswith(":"):  # a mapping's header line
                name = first[5].strip() if len(first) > 5 else ""
                start, end = (int(x, 16) for x in first[0].split("-"))
                if name == "[heap]":
                    kind = "heap"
                elif name == "":
                    kind = "big" if end - start >= 32 * 2**20 else "small"
                    out["mappings"] += 1
                else:
                    kind = None
            elif kind is not None and first[0] == "Rss:":
                out[kind] += int(first[1])
    return out


class MemoryTrace:
    """The probe ``BABELWIRE_MEMORY_TRACE`` turns on (see the module docstring)."""

    def __init__(self, folder: str, *, python_lines: bool = False) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.path = Path(folder) / f"worker-{os.getpid()}.log"
        self.started = time.monotonic()
        self.last = float("-inf")
        self.rounds = 0
        self.first: tracemalloc.Snapshot | None = None
        self.python_lines = python_lines
        if python_lines:
            tracemalloc.start(1)

    @classmethod
    def from_env(cls) -> MemoryTrace | None:
        folder = os.environ.get("BABELWIRE_MEMORY_TRACE")
        python_lines = os.environ.get("BABELWIRE_MEMORY_TRACE_PYTHON", "0") != "0"
        return cls(folder, python_lines=python_lines) if folder else None

    def after_round(self) -> None:
        self.rounds += 1
        now = time.monotonic()
        if now - self.last < MEMORY_TRACE_EVERY_S:
            return
        self.last = now
        with self.path.open("a") as f:
            f.write("\n".join(self.report(now)) + "\n")

    def report(self, now: float) -> list[str]:
        gc.collect()
        roll = rollup_kb()
        heap = heap_usage() or (0, 0)
        py = pymalloc_stats()
        anon = anon_mappings_kb()
        lines = [
            f"t={now - self.started:.0f}s rounds={self.rounds} rss={roll.get('Rss', 0) / 1024:.1f}MB "
            f"anon={roll.get('Anonymous', 0) / 1024:.1f}MB "
            f"glibc_used={heap[0] / 2**20:.1f}MB glibc_free={heap[1] / 2**20:.1f}MB "
            f"pymalloc_arenas={py.get('arenas', 0)} (highwater {py.get('arenas_highwater', 0)}, "
            f"total {py.get('arenas_total', 0)}) pymalloc_used={py.get('bytes_in_blocks', 0) / 2**20:.1f}MB "
            f"pymalloc_pool_free={py.get('bytes_free_in_pools', 0) / 2**20:.1f}MB "
            f"anon_heap={anon['heap'] / 1024:.1f}MB anon_big={anon['big'] / 1024:.1f}MB "
            f"anon_small={anon['small'] / 1024:.1f}MB anon_mappings={anon['mappings']} "
            f"threads={threading.active_count()} gc_objects={len(gc.get_objects())}"
        ]
        if self.python_lines:
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            traced, _peak = tracemalloc.get_traced_memory()
            lines[0] += f" traced={traced / 2**20:.1f}MB"
            if self.first is None:
                self.first = snap
            else:
                for stat in snap.compare_to(self.first, "lineno")[:12]:
                    lines.append(f"    {stat}")
        return lines

"""Profiles every Python process of a run, every thread, in CPU seconds (bench only).

``bench/ingest_cli_profile.py`` puts this folder first on ``PYTHONPATH`` with
``BABELWIRE_PROFILE_DIR`` set, so the command it runs, its fork server and every pool worker
forked from it start a ``cProfile`` timed by ``time.thread_time`` (each thread's own CPU, so
a thread waiting costs nothing) and write ``<role>-<pid>.prof`` into that folder when they end.
Without the variable it does nothing.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("BABELWIRE_PROFILE_DIR")

if _DIR:
    import atexit
    import cProfile
    import threading
    import time

    _profiles: list[cProfile.Profile] = []
    # The first process is the command; the Python processes it starts (fork server, resource
    # tracker) inherit the mark and are helpers; the workers forked from the fork server, workers.
    _role = ["helper" if os.environ.get("BABELWIRE_PROFILE_STARTED") else "main"]
    os.environ["BABELWIRE_PROFILE_STARTED"] = "1"

    def _new() -> cProfile.Profile:
        p = cProfile.Profile(time.thread_time)
        _profiles.append(p)
        return p

    _run = threading.Thread.run

    def _profiled_run(self: threading.Thread) -> None:
        if self.name == "owner-watch":  # sleeps; a sleeping thread's time.thread_time is not trustworthy
            _run(self)
            return
        p = _new()
        p.enable()
        try:
            _run(self)
        finally:
            p.disable()

    threading.Thread.run = _profiled_run  # type: ignore[method-assign]

    def _dump() -> None:
        import pstats

        for p in _profiles:
            p.disable()
        merged = None
        for p in _profiles:
            p.create_stats()
            if not p.stats:
                continue
            if merged is None:
                merged = pstats.Stats(p)
            else:
                merged.add(p)
        if merged is not None:
            merged.dump_stats(os.path.join(str(_DIR), f"{_role[0]}-{os.getpid()}.prof"))

    def _in_child() -> None:
        for p in _profiles:
            p.disable()
        _profiles.clear()
        _role[0] = "worker"
        _new().enable()
        from multiprocessing import util

        # multiprocessing clears its finalizers when the child starts, then runs its after-fork
        # hooks: registered from there, the dump runs when the worker ends.
        util.register_after_fork(_HOOK, lambda _hook: util.Finalize(None, _dump, exitpriority=0))

    class _Hook:
        pass

    _HOOK = _Hook()

    os.register_at_fork(after_in_child=_in_child)
    atexit.register(_dump)
    _new().enable()

"""The processes that poll and dedupe run as background work, the same way whichever command
started them: ``main.py worker`` and ``serve``'s scheduler process run at ``BABELWIRE_BACKGROUND_NICE``
(the API process keeps its own priority) and allocate through glibc's ``malloc`` while trimming is
on (``aggregator.memory``). Read from ``/proc`` of the real processes — never by timing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aggregator.db import make_engine
from aggregator.migrate import upgrade
from aggregator.settings import Settings
from tests.livesite import free_port
from tests.processes import Process, alive, children_of


def niceness(pid: int) -> int:
    """The nice value of process or thread ``pid`` (field 19 of ``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def environment(pid: int) -> dict[str, str]:
    """The environment ``pid`` started with."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode(errors="replace").partition("=")[::2] for p in pairs if p)


def scheduler_child(api: Process) -> int:
    """The pid of ``serve``'s scheduler process (a spawned multiprocessing child, not its resource tracker)."""
    api.wait_for(lambda line: "started, ticking every" in line)
    found = [
        pid
        for pid in children_of(api.pid)
        if alive(pid)
        and "multiprocessing" in (cmd := Path(f"/proc/{pid}/cmdline").read_text(errors="replace"))
        and "resource_tracker" not in cmd
    ]
    assert len(found) == 1, (children_of(api.pid), api.stderr)
    return found[0]


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    url = f"sqlite:///{tmp_path}/babelwire.sqlite"
    engine = make_engine(Settings(database_url=url))
    upgrade(engine)
    engine.dispose()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONMALLOC", "BABELWIRE_MALLOC_TRIM", "BABELWIRE_BACKGROUND_NICE")
    }
    return dict(env, BABELWIRE_DATABASE_URL=url, BABELWIRE_TICK_S="0.5", **extra)


@pytest.mark.parametrize(("trim", "nice"), [("1", "7"), ("0", "0")])
def test_serve_runs_its_scheduler_process_like_a_worker(tmp_path: Path, trim: str, nice: str) -> None:
    env = base_env(tmp_path, BABELWIRE_MALLOC_TRIM=trim, BABELWIRE_BACKGROUND_NICE=nice)
    api = Process(["serve", "--port", str(free_port())], env)
    try:
        scheduler = scheduler_child(api)
        deadline = time.monotonic() + 30  # the child lowers its priority first thing, then logs
        while time.monotonic() < deadline and niceness(scheduler) != int(nice):
            time.sleep(0.1)
        assert niceness(scheduler) == int(nice), api.stderr
        assert niceness(api.pid) == 0  # the API process answers first
        allocator = environment(scheduler).get("PYTHONMALLOC")
        assert allocator == ("malloc" if trim == "1" else None), api.stderr
        assert "PYTHONMALLOC" not in environment(api.pid)
    finally:
        code = api.stop()
    assert code in (0, -2), api.stderr
    assert "Traceback" not in api.stderr, api.stderr


def test_a_worker_runs_at_the_background_niceness_and_its_threads_too(tmp_path: Path) -> None:
    env = base_env(tmp_path, BABELWIRE_BACKGROUND_NICE="5")
    worker = Process(["worker"], env)
    try:
        worker.wait_for(lambda line: "started, ticking every" in line)
        assert environment(worker.pid).get("PYTHONMALLOC") == "malloc"  # re-run on glibc, same pid
        deadline = time.monotonic() + 30  # the first tick starts the event loop's threads
        while time.monotonic() < deadline and len(tasks := os.listdir(f"/proc/{worker.pid}/task")) < 2:
            time.sleep(0.1)
        assert len(tasks) > 1, worker.stderr
        assert [niceness(int(tid)) for tid in tasks] == [5] * len(tasks)  # each thread at the worker's
    finally:
        code = worker.stop()
    assert code == 0, worker.stderr

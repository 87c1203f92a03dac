"""A pool's processes end when the process that made the pool is killed (``kill -9`` leaves no
orphaned fork server, worker or resource tracker behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import wait_until

ROOT = Path(__file__).resolve().parents[1]

OWNER = """
import os, sys
from aggregator.procpool import forkserver_pool

def square(n):
    return n * n

if __name__ == "__main__":
    pool = forkserver_pool(2)
    assert [f.result() for f in [pool.submit(square, n) for n in range(8)]] == [n * n for n in range(8)]
    print("ready", flush=True)
    sys.stdin.read()  # until the test kills us
"""


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (zombies count as gone)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_pool_processes_end_when_their_owner_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        descendants = _children(owner.pid)
        # the fork server and at least one worker beside the resource tracker
        assert len(descendants) >= 3, descendants
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    try:
        wait_until(
            lambda: not any(_alive(pid) for pid in descendants), "the pool's processes to end", timeout_s=60
        )
    finally:
        for pid in descendants:  # when the test fails, leave nothing behind either
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

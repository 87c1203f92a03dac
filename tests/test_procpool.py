"""A pool's processes end when the process that made the pool is killed (``kill -9`` leaves no
orphaned fork server, worker or resource tracker behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.processes import alive, descendants_of, wait_until

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
        descendants = descendants_of(owner.pid)
        # the fork server and at least one worker beside the resource tracker
        assert len(descendants) >= 3, descendants
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    try:
        wait_until(
            lambda: not any(alive(pid) for pid in descendants), "the pool's processes to end", timeout_s=60
        )
    finally:
        for pid in descendants:  # when the test fails, leave nothing behind either
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

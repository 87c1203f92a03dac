"""Real babelwire processes for the multi-process tests: started from ``main.py``, their stderr read
line by line as they run (so a test can wait for a log line), stopped with a signal or killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Process:
    """One ``python main.py ARGS`` with ``env``; ``lines`` fills as it logs on stderr."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], preexec_fn: Callable[[], None] | None = None
    ) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, found: Callable[[str], bool], timeout_s: float = 60) -> None:
        """Wait until a stderr line satisfies ``found``; fail with the stderr if the process exits first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(found(line) for line in list(self.lines)):
                return
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"{self.args} exited with {self.proc.returncode}:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"{self.args}: no awaited line within {timeout_s}s:\n{self.stderr}")

    def stop(self, timeout_s: float = 60, signum: signal.Signals = signal.SIGINT) -> int:
        """``signum`` (SIGINT by default), then the exit code; a process still running after
        ``timeout_s`` prints its threads' stacks (SIGUSR1, where registered) and is killed, and the
        test fails."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.proc.kill()
            self.proc.wait()
            self._reader.join(timeout=5)
            raise AssertionError(f"{self.args} did not stop after {signum.name}:\n{self.stderr}") from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """``kill -9``: no handler runs, nothing is released."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=5)


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 120, poll_s: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something true and return that; fail the test naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after ``comm`` (state, ppid, …); comm may hold spaces,
    so split after its closing parenthesis. Empty when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def descendants_of(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, …)."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children_of(parent) if alive(child)]
        found.update(frontier)
    return found

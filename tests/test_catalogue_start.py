"""A broken outlet file stops the commands that dedupe at start, through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installation(tmp_path: Path) -> Path:
    """A copy of the program (its packages, compiled kernels included) whose catalogue we may break."""
    copy = tmp_path / "babelwire"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.c")
    for package in ("core", "aggregator", "api", "sources", "migrations"):
        shutil.copytree(ROOT / package, copy / package, ignore=ignore)
    shutil.copy2(ROOT / "main.py", copy / "main.py")
    return copy


@pytest.mark.parametrize(
    "command", [["poll", "--once"], ["worker"], ["serve", "--no-scheduler", "--port", "0"]]
)
def test_a_typo_in_one_outlet_file_is_a_one_line_error_at_start(tmp_path: Path, command: list[str]) -> None:
    copy = _installation(tmp_path)
    env = dict(os.environ, BABELWIRE_DATABASE_URL=f"sqlite:///{tmp_path}/babelwire.sqlite")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "main.py", *args], cwd=copy, env=env, capture_output=True, text=True, timeout=120
        )

    assert cli("migrate").returncode == 0
    outlet = copy / "sources" / "outlets" / "coindesk.toml"
    outlet.write_text(outlet.read_text(encoding="utf-8").replace("name =", "nmae =", 1), encoding="utf-8")
    run = cli(*command)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "coindesk.toml" in lines[0], run.stderr
    assert "Traceback" not in run.stderr

"""The package build ships what the program reads: every module and data file of the project's
packages, and dedupe's compiled kernels (``pip install .`` is a supported install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "aggregator", "api", "sources", "app")
SHIPPED = {".py", ".pyx", ".pyi", ".toml", ".tsv", ".txt", ".json", ".html", ".css", ".js"}


def _project_files() -> list[str]:
    """What a clone holds: tracked files and new ones git does not ignore (no build leftovers)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [p for p in listed.stdout.splitlines() if (ROOT / p).is_file()]


def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    files = _project_files()
    src, out = tmp_path / "src", tmp_path / "wheel"
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("babelwire-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = tuple(f"{pkg}/" for pkg in PACKAGES)
    wanted = {p for p in files if p.startswith(packaged) and Path(p).suffix in SHIPPED}
    assert len(wanted) > 50
    assert sorted(wanted - names) == []
    assert "main.py" in names
    kernels = [n for n in names if n.startswith("aggregator/dedupe/_") and n.endswith(".so")]
    assert sorted(n.split("/")[-1].split(".")[0] for n in kernels) == ["_index", "_minhash", "_pairs"], (
        kernels
    )

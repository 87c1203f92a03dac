#!/usr/bin/env python3
"""Build dedupe's native kernels (Cython → C → extension modules, in place).

    .venv/bin/python tools/build_native.py [--force]

``aggregator/dedupe/_*.pyx`` are the compiled twins of the pure-Python hot paths (the blocking
index, pair scoring); dedupe uses them when they are built and falls back to Python otherwise.
``make`` runs this after installing the requirements (Cython is one); it needs a C compiler and
the Python headers, which the machines have. Builds only what changed unless ``--force``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    try:
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension
    except ImportError as e:
        print(
            f"build_native: {e.name} is not installed (it is in requirements.txt: run `make venv`)",
            file=sys.stderr,
        )
        return 2
    force = "--force" in sys.argv[1:]
    sources = sorted(ROOT.glob("aggregator/dedupe/_*.pyx"))
    extensions = [
        Extension(
            ".".join(p.relative_to(ROOT).with_suffix("").parts),
            [str(p.relative_to(ROOT))],
            extra_compile_args=["-O2"],
        )
        for p in sources
    ]
    os.chdir(ROOT)
    modules = cythonize(extensions, language_level=3, force=force, quiet=True)
    dist = Distribution({"ext_modules": modules, "script_name": "build_native.py"})
    build = dist.get_command_obj("build_ext")
    build.inplace = True
    build.force = force
    try:
        dist.run_command("build_ext")
    except Exception as e:  # no compiler or no Python headers: say so in one line
        print(f"build_native: the build failed ({e}); dedupe would run its Python code", file=sys.stderr)
        return 1
    print(f"native kernels built: {', '.join(p.stem for p in sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

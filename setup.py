"""The compiled part of the package build: dedupe's Cython kernels (metadata is in pyproject.toml)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["aggregator.dedupe._index", "aggregator.dedupe._pairs", "aggregator.dedupe._minhash"]

setup(
    ext_modules=cythonize(
        [Extension(name, [name.replace(".", "/") + ".pyx"], extra_compile_args=["-O2"]) for name in KERNELS],
        language_level=3,
        quiet=True,
    )
)

"""Imports point one way: no cycle among the project's modules or packages, and the layers hold.

The graph is read from the source with ``ast`` (every ``import`` statement, function-level ones
included, since a deferred import is still a dependency), not by importing anything. Imports
under ``if TYPE_CHECKING:`` are left out: they never run, they only name types for mypy.

Layers, bottom up: ``core`` (error root, locales; imports nothing of the project) ←
``sources`` (catalogue, OPML, demo outlets) ← ``aggregator`` (the pipeline) ← ``api`` (reads
what the pipeline stored) ← ``app`` + ``main.py`` (the composition root). ``migrations`` reads
the models.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "sources", "aggregator", "api", "app", "migrations")
TOP_MODULES = ("main",)
PROJECT = (*PACKAGES, *TOP_MODULES)
COMPOSITION_ROOT = ("app", "main")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every module of the project's own packages."""
    found = {name: root / f"{name}.py" for name in TOP_MODULES}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_package(name: str, files: Mapping[str, Path]) -> bool:
    return files[name].name == "__init__.py"


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run, at any depth: the body of ``if TYPE_CHECKING:`` never does."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _type_checking_only(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, files: Mapping[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = name if _is_package(name, files) else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import mod`` imports the submodule when there is one, else a name of pkg.
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                targets.add(sub if sub in files else base)
    resolved = set()
    for target in targets:
        # ``import a.b.c`` of a module we have, or the nearest enclosing module we have.
        while target and target not in files:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, files) for name, path in files.items()}


def top(name: str) -> str:
    return name.split(".")[0]


def package_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """The module graph folded onto the top-level packages (``aggregator.dedupe.run`` → ``aggregator``)."""
    folded: dict[str, set[str]] = {top(n): set() for n in graph}
    for name, targets in graph.items():
        folded[top(name)].update(top(t) for t in targets if top(t) != top(name))
    return folded


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


FILES = module_files()
GRAPH = import_graph(FILES)
PACKAGE_GRAPH = package_graph(GRAPH)


def test_the_graph_sees_the_project() -> None:
    assert {"main", "core.errors", "aggregator.poll", "aggregator.dedupe.run", "api.app", "app.serve"} <= set(
        FILES
    )
    # Module-level and function-level imports, absolute and through a package, are all edges.
    assert "app.serve" in GRAPH["main"]  # imported inside cmd_serve
    assert "api.app" in GRAPH["app.serve"]  # imported inside serve()
    assert "core.errors" in GRAPH["aggregator.settings"]
    assert PACKAGE_GRAPH["aggregator"] >= {"core", "sources"}


def test_no_import_cycle_among_modules() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_no_import_cycle_among_packages() -> None:
    cycle = find_cycle(PACKAGE_GRAPH)
    assert cycle is None, "import cycle between packages: " + " → ".join(cycle or [])


def offenders(importer: str, forbidden: Iterable[str]) -> list[str]:
    banned = set(forbidden)
    return sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if top(name) == importer
        for target in targets
        if top(target) in banned
    )


def test_core_imports_nothing_of_the_project() -> None:
    assert offenders("core", set(PROJECT) - {"core"}) == []


@pytest.mark.parametrize("layer", ["sources", "aggregator"])
def test_pipeline_and_catalogue_never_import_the_api_or_the_composition_root(layer: str) -> None:
    assert offenders(layer, ("api", *COMPOSITION_ROOT)) == []


def test_sources_stay_below_the_pipeline() -> None:
    assert offenders("sources", ("aggregator",)) == []


def test_only_main_imports_the_composition_root() -> None:
    assert offenders("api", COMPOSITION_ROOT) == []
    assert offenders("migrations", COMPOSITION_ROOT) == []
    assert offenders("app", ("main",)) == []


# --- the checker itself can fail ----------------------------------------------------------------


def test_find_cycle_names_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_a_function_level_import_back_is_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("def run():\n    from app.serve import serve\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app" / "serve.py").write_text(
        "import api.app\n\ndef serve():\n    from main import run\n    from .. import core\n"
    )
    (tmp_path / "api" / "app.py").write_text(
        "from typing import TYPE_CHECKING\nfrom core import errors\nif TYPE_CHECKING:\n    from app import serve\n"
    )
    (tmp_path / "core" / "errors.py").write_text("")
    files = module_files(tmp_path)
    graph = import_graph(files)
    assert graph["app.serve"] == {"api.app", "main", "core"}
    assert graph["api.app"] == {"core.errors"}
    assert find_cycle(graph) == ["app.serve", "main", "app.serve"]

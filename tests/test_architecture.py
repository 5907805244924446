"""The package's shape: no import cycle among its modules (function-local imports included), imports that only
go down its layers, small modules, and a config (and the result readers) that load no torch."""

import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "node_transfer"
MAX_LINES = 300

# Known exceptions in modules outside this branch's scope: each to be removed when that module is split.
TOO_LONG: set[str] = set()
CYCLE_EDGES: set[tuple[str, str]] = set()  # (importer, imported): function-local imports that close a cycle

# Modules (dotted paths under node_transfer) that must load no torch when imported (in a fresh interpreter, through
# the package's __init__): the config and what it imports, the command line's parser, the readers of committed
# results, and an old path through node_transfer.MOVED (the finder that resolves it loads nothing itself).
TORCH_FREE = ("core.choices", "core.signals", "app.cli", "core.config", "core.errors", "core.solvers", "core.speed",
              "suites.results", "analysis.reporting", "suites.registry", "reporting")

# The config and what it imports at module level (checked statically below, beside the run-time check).
CONFIG_SIDE = ("core.choices", "core.config", "core.errors", "core.solvers", "core.speed")

# The layers, lowest first: one subpackage each, so a module's layer is its folder. A module imports (at module
# level or inside a function) only modules of its own layer or of a lower one. A new folder is declared here, or
# the test below fails. The package's own __init__ and __main__ sit above the layers.
LAYERS: dict[str, str] = {
    "core": "foundations: errors, signals, atomic writes, choices, solvers, config, run and suite files, ranks, memory",
    "numerics": "ODE numerics: the ODE block, its dynamics and solver backends",
    "model": "the model: backbones, heads, the transfer model, data",
    "run": "one run: features, optimiser, training, resume, the experiment, predictions",
    "suites": "many runs: the suite registry, papermill pages, scheduling, the suite runner and its files",
    "analysis": "statistics, claims, verdicts, findings, tables and figures",
    "pages": "the book's own layer: one module per results chapter (`PAGES`) and the answer's tables and figures",
    "app": "the command line, the suites' READMEs, the book's execution cache",
    "gpucheck": "the prepared check of the CUDA path on one GPU",
}
ENTRY = {"__init__", "__main__"}  # node_transfer/__init__.py and __main__.py: above every layer
# (importer, imported) -> why it goes up: each a known exception, to be removed when the code moves.
UPWARD_EDGES = {
    ("core.config", "model.backbones"): "validate() asks timm whether the backbone exists (imported there: config "
                                        "loads no torch)",
    ("suites.runner", "analysis.statistics"): "runs.csv carries each run's stability statistics, computed as it is "
                                              "written",
}


def module_name(path: Path) -> str:
    """A file's dotted path under node_transfer: core/config.py -> core.config, core/__init__.py -> core; the
    package's own __init__.py and __main__.py keep their stems."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(), filename=str(path)) for path in _files()}


def _package_of(importer: str) -> list[str]:
    """The package a module's relative imports start from (a subpackage's __init__ is its own package)."""
    if importer in ENTRY:
        return []
    parts = importer.split(".")
    is_package = (PACKAGE.joinpath(*parts) / "__init__.py").exists()
    return parts if is_package else parts[:-1]


def _imported(node: ast.AST, modules: set[str], importer: str = "__init__") -> set[str]:
    """The package modules one import statement names (`from . import x`, `from ..core.x import y`, absolute
    forms), as dotted paths under node_transfer; `importer` resolves the relative ones."""
    found = set()
    if isinstance(node, ast.ImportFrom):
        if node.level == 0 and not (node.module or "").startswith("node_transfer"):
            return found
        parts = (node.module or "").split(".") if node.module else []
        if node.level == 0:
            parts = parts[1:]  # drop "node_transfer"
        else:
            base = _package_of(importer)
            parts = base[:len(base) - (node.level - 1)] + parts
        stem = ".".join(parts)
        for alias in node.names:  # from ..core import rundir: the submodule
            child = f"{stem}.{alias.name}" if stem else alias.name
            if child in modules:
                found.add(child)
        if stem in modules and not found:
            found.add(stem)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "node_transfer" and len(parts) > 1:
                found.add(".".join(parts[1:]))
    return found & modules


def _without_type_checking_blocks(tree: ast.Module) -> ast.Module:
    """`tree` without its `if TYPE_CHECKING:` bodies: imports for annotations only never run, so close no cycle."""

    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST:
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                node.body = [ast.Pass()]
            return self.generic_visit(node)

    return Strip().visit(copy.deepcopy(tree))


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports anywhere in its body (module level or inside functions)."""
    trees = _modules()
    names = set(trees) - ENTRY
    graph = {}
    for name, tree in trees.items():
        edges = set()
        for node in ast.walk(_without_type_checking_blocks(tree)):
            edges |= _imported(node, names, name)
        graph[name] = {target for target in edges if target != name and (name, target) not in CYCLE_EDGES}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_sees_function_local_imports():
    tree = ast.parse("def f():\n    from ..numerics.ode import ODEBlock\n    from ..core import solvers\n"
                     "    from . import heads\n    import node_transfer.run.training\n")
    modules = {"numerics.ode", "core.solvers", "model.heads", "run.training"}
    found = set().union(*(_imported(node, modules, "model.transfer") for node in ast.walk(tree)))
    assert found == modules


def test_imports_for_annotations_only_close_no_cycle():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..numerics.ode import ODEBlock\n"
                     "from . import solvers\n")
    nodes = ast.walk(_without_type_checking_blocks(tree))
    found = set().union(*(_imported(node, {"numerics.ode", "core.solvers"}, "core.config") for node in nodes))
    assert found == {"core.solvers"}


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("path", [p.relative_to(PACKAGE).as_posix() for p in _files()])
def test_modules_stay_small(path):
    lines = len((PACKAGE / path).read_text().splitlines())
    if path in TOO_LONG:
        pytest.skip(f"{path}: {lines} lines, a known exception (allow-list in this test)")
    assert lines <= MAX_LINES, f"{path} has {lines} lines (at most {MAX_LINES}): split it"


def layer_of(modules: set[str]) -> dict[str, int]:
    """module -> the rank of its layer, which is its folder (the package's own entry modules have none)."""
    ranks = {folder: rank for rank, folder in enumerate(LAYERS)}
    return {module: ranks[module.split(".")[0]] for module in modules if module.split(".")[0] in ranks}


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer than the importer's, as 'a (layer) -> b (layer)'."""
    names = list(LAYERS)
    return [f"{a} ({names[layers[a]]}) -> {b} ({names[layers[b]]})" for a in sorted(graph) for b in sorted(graph[a])
            if a in layers and b in layers and layers[b] > layers[a] and (a, b) not in UPWARD_EDGES]


def test_each_layer_is_a_folder_and_every_module_sits_in_one():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS), "a subpackage is not a declared layer, or a layer has no folder"
    assert all((PACKAGE / folder / "__init__.py").exists() for folder in LAYERS)
    loose = {module_name(p) for p in PACKAGE.glob("*.py")} - ENTRY
    assert not loose, f"modules outside the layers' folders: put each in its layer's folder: {sorted(loose)}"
    assert set(layer_of(set(_modules()))) == set(_modules()) - ENTRY


def test_the_layer_rule_sees_an_upward_import():
    layers = layer_of({"core.errors", "run.training"})
    assert layers == {"core.errors": 0, "run.training": 3}
    assert upward_imports({"core.errors": {"run.training"}, "run.training": {"core.errors"}}, layers) == [
        "core.errors (core) -> run.training (run)"]


def test_imports_only_go_down_the_layers():
    graph = import_graph()
    assert upward_imports(graph, layer_of(set(graph))) == []
    stale = [edge for edge in UPWARD_EDGES if edge[1] not in graph.get(edge[0], set())]
    assert not stale, f"exceptions that no longer exist: remove them from UPWARD_EDGES: {stale}"


@pytest.mark.parametrize("name", TORCH_FREE)
def test_light_modules_load_no_torch(name):
    """Imported in a fresh interpreter (the package __init__ included), the module leaves torch unloaded."""
    code = f"import sys, node_transfer.{name}; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0, f"{name} imports torch"


def test_the_config_side_imports_no_torch_at_module_level():
    trees = _modules()
    modules = set(trees) - ENTRY
    for name in CONFIG_SIDE:
        for node in trees[name].body:  # module level only: a function may import torch when it runs
            imported = []
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported = [node.module or ""]
            assert not [m for m in imported if m.split(".")[0] in ("torch", "torchdiffeq", "torchode", "timm")], name
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                for module in _imported(node, modules, name):
                    assert module in CONFIG_SIDE, f"{name} imports {module}, which is not torch-free"


def test_the_module_paths_committed_notebooks_import_still_resolve():
    """`make reproduce` re-runs the executed notebooks in results/ unchanged: each `node_transfer.X` they import
    still names a module (an old path through node_transfer.MOVED is the module at its new home, not a copy)."""
    import importlib
    import re

    import node_transfer

    results = PACKAGE.parents[1] / "results"
    imported = set()
    for notebook in results.rglob("*.ipynb"):
        imported |= set(re.findall(r"from (node_transfer[\w.]*) import", notebook.read_text()))
    assert "node_transfer.experiment" in imported  # the scan sees the notebooks
    for name in sorted(imported):
        assert importlib.import_module(name)
    for old, new in node_transfer.MOVED.items():
        assert importlib.import_module(f"node_transfer.{old}") is importlib.import_module(f"node_transfer.{new}")
    assert {f"node_transfer.{old}" for old in node_transfer.MOVED} <= imported  # no alias the notebooks do not need

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

# Modules that must load no torch when imported (in a fresh interpreter, through the package's __init__): the
# config and what it imports, the command line's parser, and the readers of committed results.
TORCH_FREE = ("choices", "cli", "config", "errors", "solvers", "speed", "suite_results", "reporting", "suites")

# The config and what it imports at module level (checked statically below, beside the run-time check).
CONFIG_SIDE = ("choices", "config", "errors", "solvers", "speed")

# The layers, lowest first: a module imports (at module level or inside a function) only modules of its own layer
# or of a lower one. A new module is declared here, or the test below fails.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundations": ("errors", "atomic", "choices", "solvers", "speed", "config", "checkpoints", "rundir", "distributed",
                    "suitedir", "memory", "calibration"),
    "ODE numerics": ("lean_rk", "lean_backend", "torchdiffeq_backend", "torchode_backend", "dynamics", "ode"),
    "model": ("backbones", "heads", "model", "tensor_images", "data"),
    "one run": ("features", "optim", "resume", "rebuild", "training", "experiment", "predict"),
    "many runs": ("suites", "notebooks", "scheduling", "cluster", "suite_runner", "suite_results"),
    "analysis": ("statistics", "paired", "claims", "convergence", "verdicts", "findings", "plots", "sweeps",
                 "answer", "epoch_cost", "bench_results", "gpu_results", "chapter_facts", "overfit_facts", "reporting"),
    "pages and CLI": ("readmes", "book_cache", "commands", "cli", "__main__", "gpucheck", "gpucheck_carry",
                      "gpucheck_report", "gpucheck_runs", "gpucheck_sections", "gpucheck_speed"),
}
# (importer, imported) -> why it goes up: each a known exception, to be removed when the code moves.
UPWARD_EDGES = {
    ("config", "backbones"): "validate() asks timm whether the backbone exists (imported there: config loads no "
                             "torch)",
    ("suite_runner", "statistics"): "runs.csv carries each run's stability statistics, computed as it is written",
}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), filename=str(path)) for path in sorted(PACKAGE.glob("*.py"))}


def _imported(node: ast.AST, modules: set[str]) -> set[str]:
    """The package modules one import statement names (`from . import x`, `from .x import y`, absolute forms)."""
    found = set()
    if isinstance(node, ast.ImportFrom):
        if node.level == 0 and not (node.module or "").startswith("node_transfer"):
            return found
        parts = (node.module or "").split(".")
        if node.level == 0:
            parts = parts[1:]  # drop "node_transfer"
        if parts and parts[0]:
            found.add(parts[0])
        else:  # from . import a, b
            found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            if parts[0] == "node_transfer" and len(parts) > 1:
                found.add(parts[1])
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
    names = set(trees) - {"__init__", "__main__"}
    graph = {}
    for name, tree in trees.items():
        edges = set()
        for node in ast.walk(_without_type_checking_blocks(tree)):
            edges |= _imported(node, names)
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
    tree = ast.parse("def f():\n    from .ode import ODEBlock\n    from . import solvers\n")
    found = set().union(*(_imported(node, {"ode", "solvers"}) for node in ast.walk(tree)))
    assert found == {"ode", "solvers"}


def test_imports_for_annotations_only_close_no_cycle():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .ode import ODEBlock\n"
                     "from . import solvers\n")
    nodes = ast.walk(_without_type_checking_blocks(tree))
    found = set().union(*(_imported(node, {"ode", "solvers"}) for node in nodes))
    assert found == {"solvers"}


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("name", sorted(p.stem for p in PACKAGE.glob("*.py")))
def test_modules_stay_small(name):
    lines = len((PACKAGE / f"{name}.py").read_text().splitlines())
    if name in TOO_LONG:
        pytest.skip(f"{name}.py: {lines} lines, a known exception (allow-list in this test)")
    assert lines <= MAX_LINES, f"{name}.py has {lines} lines (at most {MAX_LINES}): split it"


def layer_of() -> dict[str, int]:
    return {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module from a higher layer than the importer's, as 'a (layer) -> b (layer)'."""
    names = list(LAYERS)
    return [f"{a} ({names[layers[a]]}) -> {b} ({names[layers[b]]})" for a in sorted(graph) for b in sorted(graph[a])
            if a in layers and b in layers and layers[b] > layers[a] and (a, b) not in UPWARD_EDGES]


def test_every_module_has_one_layer():
    declared = [m for modules in LAYERS.values() for m in modules]
    assert len(declared) == len(set(declared)), "a module is declared in two layers"
    assert set(declared) == {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}


def test_the_layer_rule_sees_an_upward_import():
    layers = {"errors": 0, "training": 3}
    assert upward_imports({"errors": {"training"}, "training": {"errors"}}, layers) == [
        "errors (foundations) -> training (one run)"]


def test_imports_only_go_down_the_layers():
    assert upward_imports(import_graph(), layer_of()) == []
    graph = import_graph()
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
    for name in CONFIG_SIDE:
        for node in trees[name].body:  # module level only: a function may import torch when it runs
            imported = []
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported = [node.module or ""]
            assert not [m for m in imported if m.split(".")[0] in ("torch", "torchdiffeq", "torchode", "timm")], name
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                assert node.module in CONFIG_SIDE, f"{name} imports .{node.module}, which is not torch-free"

"""One home per file name: run-directory names are spelled only in `rundir`, suite-directory and report names and
the default root only in `suitedir`; every other module names them through those (read with ast, like
test_architecture)."""

import ast
import re
from pathlib import Path

from node_transfer.core import rundir, suitedir

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "node_transfer"
HOMES = {"core/rundir.py", "core/suitedir.py"}
RUN_NAMES = {rundir.CONFIG, rundir.HISTORY, rundir.METRICS, rundir.LAST, rundir.BEST, rundir.ERROR, rundir.LOCK}
SUITE_NAMES = {suitedir.SUITE_META, suitedir.RUNS_TABLE, suitedir.TABLES, suitedir.RUN_CURVES, suitedir.ALL_CURVES,
               suitedir.ESTIMATION, suitedir.TOLERANCE, suitedir.COST_ACCURACY}
NAMED = re.compile("|".join(rf"(?<![\w.-]){re.escape(name)}(?!\w|\.\w)" for name in sorted(RUN_NAMES | SUITE_NAMES)))


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions (prose may name files)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of every place a module spells a run- or suite-directory name itself: a string (or a piece of
    an f-string) naming one of the files, a run folder built as `...-s{seed}`, or `Path("runs")`."""
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if NAMED.search(node.value):
                found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            for piece, following in zip(node.values, node.values[1:]):
                if isinstance(piece, ast.Constant) and str(piece.value).endswith("-s") and \
                        isinstance(following, ast.FormattedValue):
                    found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Path" \
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "runs":
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_run_or_suite_file_name_is_spelled_outside_its_home():
    spelled = {}
    for path in sorted(PACKAGE.rglob("*.py")):  # subpackages included
        name = path.relative_to(PACKAGE).as_posix()
        if name in HOMES:
            continue
        found = spelled_names(ast.parse(path.read_text(), filename=str(path)))
        if found:
            spelled[name] = found
    assert not spelled, f"name these through rundir / suitedir: {spelled}"


def test_the_scan_finds_each_kind_of_spelling():
    """The check above is only as good as its scan: each kind of spelling it must catch is caught."""
    source = '''
"""Docstrings may say metrics.json."""
from pathlib import Path
a = run_dir / "metrics.json"
b = out / f"{label}-s{seed}"
c = Path("runs") / "demo"
d = results.glob(f"*/suite.json")
e = f"holds no last.pt to resume from"
f = "context.json", "my-last.pt.bak", "runs"
'''
    lines = sorted(line for line, _ in spelled_names(ast.parse(source)))
    assert lines == [4, 5, 6, 7, 8]


def test_run_dir_name_is_the_suites_folder_of_a_label_and_seed():
    assert suitedir.run_dir_name("node", 3) == "node-s3"
    assert suitedir.run_dir_name("*", 0) == "*-s0"  # a glob pattern too

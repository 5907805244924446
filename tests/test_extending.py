"""What a newcomer touches to extend the package (issue 43's measure of the house): a made-up solve setting, a
made-up head and a made-up chapter, each added to a temporary copy of the repository by the edits the docstrings
name, then used end to end in a fresh interpreter on that copy. Each test counts the files its edits changed or
created: solve setting <= 4 (two declarations, the loop that honours it, the generated parameters cell), head <= 2
(its `HEAD_KINDS` entry and its builder), chapter <= 4 (its module, its page, a `PAGES` line, `_toc.yml`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from myst_pages import myst_page

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info", "_build", ".jupyter_cache", "*.ipynb")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package, the book and the page tests copied to a temporary checkout."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=SKIP)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=SKIP)
    shutil.copy(ROOT / "_toc.yml", tmp_path / "_toc.yml")
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "test_pages.py", tmp_path / "tests" / "test_pages.py")
    return tmp_path


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def changed(before: dict[str, str], root: Path) -> list[str]:
    """The files of the copy that its edits changed or created."""
    after = digests(root)
    return sorted(name for name, digest in after.items() if before.get(name) != digest)


def insert(path: Path, anchor: str, text: str, after: bool = True) -> None:
    """Put `text` right after (or before) the one line of `path` that contains `anchor`."""
    lines = path.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if anchor in line]
    assert len(hits) == 1, f"{path.name}: {anchor!r} found {len(hits)} times"
    lines.insert(hits[0] + after, text)
    path.write_text("".join(lines))


def run_in(copy: Path, script: str) -> str:
    """Run `script` with the copy's package first on the path; fail with its output if it fails."""
    env = dict(os.environ, PYTHONPATH=f"{copy / 'src'}{os.pathsep}{copy / 'tests'}", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_new_solve_setting_is_a_field_twice_and_the_loop_that_reads_it(copy):
    before = digests(copy)
    package = copy / "src" / "node_transfer"
    insert(package / "core" / "config.py", "max_num_steps: int = field(",
           '    max_step: float = field(default=0.0, metadata={"help": "largest adaptive step (0: none)"})\n')
    insert(package / "core" / "solvers.py", "    max_num_steps: int\n", "    max_step: float\n")
    insert(package / "numerics" / "lean_rk.py", "dt = 0.0  # torchdiffeq: min_step",
           "        dt = min(dt, settings.max_step) if settings.max_step > 0 else dt\n")
    out = run_in(copy, """
        import torch
        from node_transfer.app.cli import build_parser
        from node_transfer.core.config import ExperimentConfig
        from node_transfer.core.solvers import SolverSettings
        from node_transfer.numerics.dynamics import MLPDynamics
        from node_transfer.numerics.ode import ODEBlock

        def nfe(max_step):
            torch.manual_seed(0)
            config = ExperimentConfig(rtol=1e-3, atol=1e-3, max_step=max_step, ode_backend="lean")
            block = ODEBlock(MLPDynamics(4, 16, "tanh"), SolverSettings.from_config(config))
            block(torch.randn(3, 4))
            return block.nfe_forward

        print("nfe", nfe(0.0), nfe(0.05))
        parser = build_parser()
        run = parser._subparsers._group_actions[0].choices["run"]
        print("group", next(g.title for g in run._action_groups
                            if any(a.dest == "max_step" for a in g._group_actions)))
    """)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    free, bounded = map(int, lines["nfe"].split())
    assert bounded >= 20 * 6 > free, out  # the bound reached the loop: at least 1 / 0.05 steps of 6 evaluations
    assert lines["group"] == "solve"
    # the parameters cell of book/experiment.md is generated: `node-transfer readme` writes the new field into it
    run_in(copy, """
        from node_transfer.app.readmes import PARAMETERS, section_text
        from node_transfer.core.config_groups import parameters_source
        from pathlib import Path
        page = Path("book/experiment.md")
        text = page.read_text()
        page.write_text(text.replace(section_text(text, PARAMETERS), parameters_source()))
    """)
    assert "max_step: float = 0.0" in (copy / "book" / "experiment.md").read_text()
    files = changed(before, copy)
    assert files == ["book/experiment.md", "src/node_transfer/core/config.py", "src/node_transfer/core/solvers.py",
                     "src/node_transfer/numerics/lean_rk.py"]


def test_a_new_head_is_a_registry_entry_and_its_builder(copy):
    before = digests(copy)
    package = copy / "src" / "node_transfer"
    insert(package / "core" / "choices.py", 'HeadKind("node", True, takes_maps=True))}',
           '                                           HeadKind("affine", False),\n', after=False)
    insert(package / "model" / "heads.py", "def head_from_config(", textwrap.dedent('''
        @builds("affine")
        def _affine(config: ExperimentConfig, num_features: int, num_classes: int) -> nn.Module:
            return nn.Linear(num_features, num_classes)


    '''), after=False)
    out = run_in(copy, """
        import torch
        from node_transfer.core.config import ExperimentConfig
        from node_transfer.model.heads import head_from_config
        from node_transfer.run.experiment import new_run_dir

        config = ExperimentConfig(head="affine", dataset="digits")
        print("logits", tuple(head_from_config(config, 8, 3)(torch.randn(2, 8)).shape))
        print("folder", new_run_dir(config, __import__("pathlib").Path("runs")).name.split("-digits-")[1])
    """)
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["logits"] == "(2, 3)" and lines["folder"] == "affine-s0", out
    assert changed(before, copy) == ["src/node_transfer/core/choices.py", "src/node_transfer/model/heads.py"]


PAGE = myst_page("""# Notes

The study has {glue:text}`notes_suites` committed suites.

```{code-cell} ipython3
:tags: [remove-input]
from myst_nb import glue

from node_transfer.pages.notes import page_facts
from node_transfer.suites.notebooks import results_dir

for name, value in page_facts(results_dir()).items():
    glue(name, value, display=False)
```
""")

MODULE = '''\
"""The facts of a made-up chapter."""

from pathlib import Path


def page_facts(results: str | Path) -> dict[str, str]:
    """{glued name: value}: how many suites are committed."""
    return {"notes_suites": str(len(list(Path(results).glob("*/suite.json"))))}
'''


def test_a_new_chapter_is_its_module_its_page_a_registry_line_and_the_toc(copy):
    before = digests(copy)
    (copy / "book" / "notes.md").write_text(PAGE)
    (copy / "src" / "node_transfer" / "pages" / "notes.py").write_text(MODULE)
    registry = copy / "src" / "node_transfer" / "pages" / "__init__.py"
    insert(registry, '"glossary": "glossary",', '    "notes": "notes",\n')
    glossary = next(line for line in (copy / "_toc.yml").read_text().splitlines() if "book/glossary" in line)
    insert(copy / "_toc.yml", "book/glossary", glossary.replace("glossary", "notes") + "\n")
    run_in(copy, """
        import test_pages
        from node_transfer.pages import PAGES
        assert PAGES["notes"] == "notes"
        test_pages.test_every_results_chapter_is_in_the_toc_and_every_module_exists()
        test_pages.test_a_chapter_loads_its_module_and_keeps_its_cells_short("notes")
        test_pages.test_every_glued_name_of_a_chapter_is_glued_by_its_code("notes")
    """)
    assert changed(before, copy) == ["_toc.yml", "book/notes.md", "src/node_transfer/pages/__init__.py",
                                     "src/node_transfer/pages/notes.py"]

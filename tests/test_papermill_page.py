"""The experiment page under plain papermill, read through the jupytext pipe the README documents."""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
from myst_pages import myst_page

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.errors import ConfigError
from node_transfer.suites.notebooks import book_dir, config_from_page, injected_parameter_names

PAGE = book_dir() / "experiment.md"
TINY = ["-p", "image_size", "32", "-p", "freeze_backbone", "True", "-p", "cache_features", "True",
        "-p", "augment", "False", "-p", "head", "fc", "-p", "epochs", "2"]


def pipe(tmp_path: Path, *params: str) -> subprocess.CompletedProcess:
    """`jupytext --to ipynb -o - book/experiment.md | papermill - out.ipynb -p ...` in tmp_path."""
    python = sys.executable
    command = (f"'{python}' -m jupytext --to ipynb -o - '{PAGE}' | '{python}' -m papermill - out.ipynb "
               + " ".join(f"'{p}'" for p in params))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env=env)


def test_papermill_infers_every_parameter_of_the_page(tmp_path):
    path = tmp_path / "experiment.ipynb"
    jupytext.write(jupytext.read(PAGE), path)
    inferred = papermill.inspect_notebook(str(path))  # a line it cannot parse would drop a parameter
    assert list(inferred) == ExperimentConfig.field_names()
    assert inferred["solver"]["help"].startswith("ODE method")


def test_injected_names_come_from_papermills_cell_in_the_input_history():
    history = ["", "from typing import Optional\nepochs: int = 3\n", "# Parameters\nepoch = 1\nhead = \"fc\"\n"]
    namespace = {"In": history, "epoch": 1, "head": "fc", **ExperimentConfig().to_dict()}
    assert injected_parameter_names(namespace) == ["epoch", "head"]
    with pytest.raises(ConfigError, match="epoch") as info:
        config_from_page(namespace)
    assert "did you mean 'epochs'?" in str(info.value) and info.value.name == "epoch"
    namespace["In"] = history[:2]  # nbval, Jupyter Book: nothing injected, nothing to refuse
    assert config_from_page(namespace) == ExperimentConfig()


def test_plain_papermill_refuses_an_unknown_name_before_any_work(tmp_path):
    result = pipe(tmp_path, "-p", "epoch", "1", "-p", "solver", "dopri5")
    assert result.returncode != 0
    assert "invalid parameter epoch=1" in result.stderr and "did you mean 'epochs'?" in result.stderr
    assert "unknown parameter: solver" not in result.stderr  # papermill parses every line of the cell
    assert not (tmp_path / "runs").exists()


def test_plain_papermill_runs_the_page_with_one_progress_line_per_epoch(tmp_path):
    result = pipe(tmp_path, *TINY, "-p", "out", "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unknown parameter" not in result.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
    notebook = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    run_cell = next(c for c in notebook.cells if "run_experiment(config)" in c.source)
    stderr = [o for o in run_cell.outputs if o.get("name") == "stderr"]
    text = "".join(o.text for o in stderr)
    assert "epoch 1/2: train loss" in text and "epoch 2/2: train loss" in text
    assert len(stderr) <= 4 and "\r" not in text  # no progress-bar refreshes saved in the notebook


PAGE_TEXT = myst_page("""# A page

```{code-cell} ipython3
answer = 6 * 7
print("the answer is", answer)
```

```{code-cell} ipython3
:tags: [hide-input]
{CELL}
```
""")


@pytest.mark.parametrize("cell, cached", [("answer + 1", True), ("1 / 0", False)])
def test_pages_that_pass_under_nbval_fill_the_books_execution_cache(tmp_path, cell, cached):
    from jupyter_cache import get_cache
    from myst_nb.core.read import read_myst_markdown_notebook

    from node_transfer.suites.notebooks import convert_book

    book, nbtest, cache = tmp_path / "book", tmp_path / "nbtest", tmp_path / "cache"
    book.mkdir()
    (book / "page.md").write_text(PAGE_TEXT.replace("{CELL}", cell))
    convert_book(nbtest, book)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                             "-p", "node_transfer.app.book_cache", "--book-cache", str(cache), "."], cwd=nbtest,
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode == 0) == cached, result.stdout[-2000:]
    page = read_myst_markdown_notebook((book / "page.md").read_text())  # as the book build reads it
    if not cached:
        with pytest.raises(KeyError):
            get_cache(str(cache)).match_cache_notebook(page)
        return
    _, merged = get_cache(str(cache)).merge_match_into_notebook(page)
    code = [c for c in merged.cells if c.cell_type == "code"]
    assert code[0].outputs[0]["text"] == "the answer is 42\n"
    assert code[1].outputs[0]["data"]["text/plain"] == "43" and code[1].metadata["tags"] == ["hide-input"]

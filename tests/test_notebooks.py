"""The book's pages as notebooks: the experiment page's parameters cell, papermill errors, stripped images,
lint scripts, and strict nbval wherever the checkout lives."""

import re
import typing
from dataclasses import fields

import jupytext
import nbformat
import pytest

from node_transfer.core.config import ExperimentConfig
from node_transfer.suites.notebooks import book_dir, execute_page


def parameters_cell(notebook) -> str:
    return next(cell.source for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))


def test_experiment_page_parameters_are_exactly_the_run_options():
    notebook = jupytext.read(book_dir() / "experiment.md")
    namespace: dict = {}
    exec(parameters_cell(notebook), namespace)  # the cell is plain assignments
    names = [name for name in namespace if not name.startswith("__") and name not in ("Optional",)]
    assert names == ExperimentConfig.field_names()
    defaults = ExperimentConfig()
    for name in names:
        assert namespace[name] == getattr(defaults, name), name
    hints = typing.get_type_hints(ExperimentConfig)
    lines = {line.split(":")[0]: line for line in parameters_cell(notebook).splitlines()}
    for f in fields(ExperimentConfig):  # annotations and comments document the types for papermill --help
        assert f"{f.name}: " in lines[f.name], hints[f.name]
        if f.metadata.get("help"):  # the comment is the CLI's help text, so the two cannot drift apart
            assert lines[f.name].split("  # ", 1)[1].startswith(f.metadata["help"]), f.name


def test_a_bad_parameter_fails_in_the_executed_notebook_with_a_clear_message(tmp_path):
    import papermill

    output = tmp_path / "bad.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as info:
        execute_page(book_dir() / "experiment.md", output, {"epochs": "3"}, cwd=tmp_path)
    assert "invalid parameter epochs='3'" in str(info.value)
    saved = output.read_text()
    assert "invalid parameter epochs='3'" in saved and not (tmp_path / "runs").exists()


def test_strip_images_keeps_text_outputs(tmp_path):
    from node_transfer.suites.notebooks import strip_images

    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                 "text/plain": "<Figure size 640x480>"})]
    path = tmp_path / "run.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(path))
    assert strip_images(path) == 1
    assert nbformat.read(str(path), as_version=4).cells[0].outputs[0]["data"] == {"text/plain": "<Figure size 640x480>"}


def test_book_scripts_hold_the_code_cells_of_every_notebook_page(tmp_path):
    from node_transfer.suites.notebooks import book_scripts

    paths = book_scripts(tmp_path)
    pages = [page for page in sorted(book_dir().glob("*.md")) if "kernelspec" in jupytext.read(page).metadata]
    assert [path.stem for path in paths] == [page.stem for page in pages] and "experiment" in {p.stem for p in paths}
    script = (tmp_path / "experiment.py").read_text()
    assert "# %%" in script and "run_experiment(" in script  # code, as percent-format cells
    assert "{glue:text}" not in "".join(path.read_text() for path in paths)  # no prose


def test_strict_reproduction_ignores_where_the_checkout_lives():
    """The committed notebooks must compare equal under nbval wherever CI clones the repository."""
    from nbval.plugin import get_sanitize_patterns

    repo = book_dir().parent
    patterns = get_sanitize_patterns((repo / "results" / "nbval-sanitize.cfg").read_text())
    assert patterns, "nbval-sanitize.cfg holds no regex/replace pair"

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    warning = ("{root}/.venv/lib/python3.11/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found. "
               "See https://ipywidgets.readthedocs.io/en/stable/user_install.html\n")
    roots = ["/work/main", "/tmp/fresh", "/check", "/srv/ci/node-transfer", "/home/runner/work/x"]
    assert len({sanitize(warning.format(root=root)) for root in roots}) == 1
    # URLs, relative paths and ratios are content, not machine paths: they stay.
    kept = "see https://example.org/a/b, results/bench/x.csv, 3/4 and val/test"
    assert sanitize(kept) == kept


def test_run_help_shows_one_argument_group_per_config_group_and_the_page_cell_follows_the_config(capsys):
    from node_transfer.app.cli import build_parser
    from node_transfer.app.readmes import PARAMETERS, section_text
    from node_transfer.core.config_groups import config_groups, parameters_source

    groups = config_groups()
    assert sum(map(len, groups.values())) == len(ExperimentConfig.field_names()) and "solve" in groups
    assert {"rtol", "atol", "solver", "adjoint"} <= set(groups["solve"])
    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    titles = [group.title for group in run._action_groups]
    assert [title for title in titles if title in groups] == list(groups)
    cell = parameters_cell(jupytext.read(book_dir() / "experiment.md"))
    assert section_text(cell, PARAMETERS) == parameters_source()  # `node-transfer readme` writes it
    assert all(f"\n# {title}\n" in f"\n{cell}\n" for title in groups)

"""The book's own layer: every results chapter is served by one module of `pages`, loads it, and keeps its cells
short; every name it glues in its text is glued by its code."""

import importlib
import re

import jupytext
import pytest

from node_transfer.pages import PAGES
from node_transfer.suites.notebooks import book_dir, results_dir

#: The longest code cell of a results chapter: a page loads, calls and shows; the logic lives in its module.
MAX_CELL_LINES = 25


def code(page: str) -> list[str]:
    return [cell.source for cell in jupytext.read(book_dir() / f"{page}.md").cells if cell.cell_type == "code"]


def test_every_results_chapter_is_in_the_toc_and_every_module_exists():
    toc = (book_dir().parent / "_toc.yml").read_text()
    for page, module in PAGES.items():
        assert f"book/{page}" in toc, page
        importlib.import_module(f"node_transfer.pages.{module}")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_chapter_loads_its_module_and_keeps_its_cells_short(page):
    cells = code(page)
    assert any(f"node_transfer.pages.{PAGES[page]} import" in cell or f"node_transfer.pages import {PAGES[page]}"
               in cell for cell in cells), f"book/{page}.md does not load node_transfer.pages.{PAGES[page]}"
    longest = max(len(cell.splitlines()) for cell in cells)
    assert longest <= MAX_CELL_LINES, f"book/{page}.md has a code cell of {longest} lines: move its logic"


def unglued(text: str, cells: list[str], facts: set[str]) -> set[str]:
    """The names a page's text uses (`{glue:...}` roles and directives) that its code never glues: not by a literal
    `glue("name", ...)`, an f-string pattern of one (`glue(f"{key}_status", ...)`), a loop over a dict written in the
    cell, or its module's facts (`facts`)."""
    used = set(re.findall(r"\{glue(?::\w+)?\}`([a-zA-Z0-9_]+)", text))
    used |= set(re.findall(r"```\{glue(?::\w+)?\} ([a-zA-Z0-9_]+)", text))
    source = "\n".join(cells)
    literal = set(re.findall(r"glue\(\s*\"([a-zA-Z0-9_]+)\"", source))
    for cell in cells:  # `for name, value in {"a": ..., ...}.items()`
        if "for name, value in {" in cell:
            literal |= set(re.findall(r"\"([a-zA-Z0-9_]+)\":", cell.split("for name, value in {", 1)[1]))
    patterns = [re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[a-z0-9]+", re.escape(p)) + "$")
                for p in re.findall(r"glue\(\s*f\"([^\"]+)\"", source)]
    return {name for name in used - literal - facts if not any(p.match(name) for p in patterns)}


def test_a_glued_name_no_code_glues_is_found():
    cells = ['glue("a", 1)', 'for key in ("x",):\n    glue(f"{key}_status", 2)',
             'for name, value in {"b": 3}.items():\n    glue(name, value)']
    text = "{glue:text}`a` {glue:text}`x_status` {glue:text}`b` {glue:text}`c` {glue:text}`d`\n```{glue:figure} e\n```"
    assert unglued(text, cells, {"c"}) == {"d", "e"}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_glued_name_of_a_chapter_is_glued_by_its_code(page):
    module = importlib.import_module(f"node_transfer.pages.{PAGES[page]}")
    text = (book_dir() / f"{page}.md").read_text()
    assert "{glue" in text
    missing = unglued(text, code(page), set(module.page_facts(results_dir())))
    assert not missing, f"book/{page}.md uses glued names its code never glues: {sorted(missing)}"


def test_the_verdict_grid_calls_a_declared_study_interim_until_all_its_runs_are_in():
    import pandas as pd

    from node_transfer.pages.verdict_grid import interim_note, verdict_grid

    runs = pd.DataFrame({"label": ["rk", "fc-adam", "rk", "fc-adam", "baseline", "rk"], "seed": [0, 0, 1, 1, 0, 7]})
    assert interim_note(runs, {"rk", "fc-adam"}, (0, 1, 2)) == " (interim: 4 of 6 runs)"  # seed 7 not declared
    assert interim_note(runs, {"rk", "fc-adam"}, (0, 1)) == ""
    grid = verdict_grid(results_dir())
    for column in grid.columns[1:]:  # a regime's cells with labels agree: all interim, or none
        labelled = [cell for cell in grid[column] if cell not in ("no primary test", "runs not in yet")]
        assert len({"interim" in cell for cell in labelled}) <= 1, column
    assert "(interim" not in " ".join(grid["fine-tune"]) + " ".join(grid["overfitting"])  # the answer's, complete

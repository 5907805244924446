"""A pytest plugin: the book pages that nbval executes fill Jupyter Book's execution cache.

`make notebooks` runs `pytest --nbval-lax -p node_transfer.app.book_cache --book-cache _build/.jupyter_cache`, and
the book build that follows finds every page that passed in the cache (keyed, as myst-nb keys it, by the page's
code cells) and shows those outputs instead of executing the page a second time. A page with a failed or skipped
cell is not cached: the book build executes it and reports it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

CACHE_OPTION = "--book-cache"


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("nbval").addoption(
        CACHE_OPTION, default=None, metavar="DIR",
        help="store each notebook whose cells all passed, with nbval's outputs, in this Jupyter Book execution "
             "cache (its page is read from the notebook's node_transfer.source_page metadata)")


_failed: set[str] = set()
_started: dict[str, float] = {}


def pytest_runtest_logreport(report: Any) -> None:
    """Remember cells that failed or were skipped (in any phase); time each notebook."""
    notebook = report.nodeid.split("::", 1)[0]
    _started.setdefault(notebook, time.perf_counter())
    if report.failed or report.skipped:
        _failed.add(notebook)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    cache_dir = session.config.getoption(CACHE_OPTION)
    if not cache_dir:
        return
    from nbval.plugin import IPyNbCell

    by_notebook: dict[Any, list[Any]] = {}
    for item in session.items:
        if isinstance(item, IPyNbCell):
            by_notebook.setdefault(item.parent, []).append(item)
    for notebook, cells in by_notebook.items():
        nodeid = notebook.nodeid
        if nodeid in _failed or any(cell.test_outputs is None for cell in cells):
            continue
        seconds = time.perf_counter() - _started.get(nodeid, time.perf_counter())
        source = notebook.nb.metadata.get("node_transfer", {}).get("source_page")
        if source and cache_page(Path(source), [cell.test_outputs for cell in cells], Path(cache_dir), seconds):
            print(f"book cache: {Path(source).name} stored with its nbval outputs")


def cache_page(page: Path, outputs: list[list[Any]], cache_dir: Path, seconds: float) -> bool:
    """Store `page` (a MyST notebook), its code cells given `outputs`, in a Jupyter Book execution cache.

    The page is read with myst-nb's own reader so that the cache key is the one the book build computes; False
    (nothing stored) when the page's code cells do not match the outputs one to one."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import read_myst_markdown_notebook

    notebook = read_myst_markdown_notebook(page.read_text(), path=page)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if len(code) != len(outputs):
        return False
    for count, (cell, cell_outputs) in enumerate(zip(code, outputs), 1):
        cell.outputs, cell.execution_count = cell_outputs, count
    get_cache(str(cache_dir)).cache_notebook_bundle(
        CacheBundleIn(notebook, str(page), data={"execution_seconds": seconds}), check_validity=False,
        overwrite=True)
    return True

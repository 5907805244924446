"""The book's jupytext pages as notebooks: converted for nbval, executed with papermill.

Papermill cannot read a jupytext `.md`: pipe it through jupytext (`jupytext --to ipynb -o - PAGE | papermill -
OUT -p NAME VALUE`), or call `execute_page`, which does the same in Python. `config_from_page` is how
`book/experiment.md` turns its parameters into a config, refusing names papermill injected that it does not know.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..core.config import ExperimentConfig
from ..core.errors import ConfigError
from ..core.signals import signals_handled

BOOK = Path(__file__).resolve().parents[3] / "book"
SKIP_FILE = "nbval-skip.txt"


def results_dir() -> Path:
    """The committed results (`results/` of the source checkout), wherever a page is executed from."""
    return book_dir().parent / "results"


def book_dir() -> Path:
    """The book's folder in a source checkout (the package is installed editable)."""
    if not BOOK.is_dir():
        raise FileNotFoundError(f"no book/ folder next to the package ({BOOK}); use a source checkout")
    return BOOK


def notebook_pages(book: Path | None = None) -> list[Path]:
    """Jupytext MyST pages (those with a kernelspec in their front matter), minus those in nbval-skip.txt."""
    import jupytext

    book = book or book_dir()
    skip_file = book / SKIP_FILE
    skip = set(skip_file.read_text().split()) if skip_file.is_file() else set()
    pages = []
    for path in sorted(book.glob("*.md")):
        if path.name in skip:
            continue
        if "kernelspec" in jupytext.read(path).metadata:
            pages.append(path)
    return pages


def convert_book(out: str | Path, book: Path | None = None) -> list[Path]:
    """Write each notebook page as .ipynb into `out` (for `pytest --nbval-lax`); returns the paths."""
    import jupytext

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page in notebook_pages(book):
        target = out / f"{page.stem}.ipynb"
        notebook = jupytext.read(page)
        notebook.metadata.setdefault("node_transfer", {})["source_page"] = str(page)
        jupytext.write(notebook, target)
        written.append(target)
    return written


def book_scripts(out: str | Path, book: Path | None = None) -> list[Path]:
    """Write each notebook page's code cells as a percent-format script into `out` (for ruff); returns the paths.

    Prose cells are left out, and the cells' rendering metadata (a figure's caption and alt text): ruff would read
    them as over-long comments."""
    import jupytext

    book = book or book_dir()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for page in sorted(book.glob("*.md")):
        notebook = jupytext.read(page)
        if "kernelspec" not in notebook.metadata:
            continue
        notebook.cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        for cell in notebook.cells:
            cell.metadata.pop("mystnb", None)
        target = out / f"{page.stem}.py"
        jupytext.write(notebook, target, fmt="py:percent")
        written.append(target)
    return written


def injected_parameter_names(namespace: Mapping[str, Any]) -> list[str]:
    """Names assigned by papermill's injected-parameters cell, read from IPython's input history `In`.

    Papermill's injected cell starts with the comment `# Parameters`; without one (nbval, Jupyter Book, a
    plain kernel) nothing was injected and the list is empty."""
    history = namespace.get("In")
    if not isinstance(history, list):
        return []
    for source in reversed(history):
        if isinstance(source, str) and source.startswith("# Parameters\n"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return []
            names = [target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                     for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                     if isinstance(target, ast.Name)]
            return list(dict.fromkeys(names))
    return []


def check_injected_names(names: list[str], namespace: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every injected name that is not a parameter (with close matches)."""
    known = ExperimentConfig.field_names()
    unknown = [name for name in names if name not in known]
    if not unknown:
        return
    described = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(unknown[0], namespace.get(unknown[0]),
                      f"a parameter of this page; unknown name(s) {', '.join(described)}; the parameters are "
                      f"{', '.join(known)}")


def config_from_page(namespace: Mapping[str, Any]) -> ExperimentConfig:
    """The ExperimentConfig of a page's parameters (pass `globals()`); unknown injected names are refused.

    A parameter the page does not define keeps its default, or, for the settings runs predate (`speed.LEGACY`), the
    value they had then: notebooks executed before a parameter existed still run, to the same numbers."""
    check_injected_names(injected_parameter_names(namespace), namespace)
    return ExperimentConfig.from_saved({name: namespace[name] for name in ExperimentConfig.field_names()
                                        if name in namespace})


def execute_page(page: str | Path, output: str | Path, parameters: dict[str, Any],
                 cwd: str | Path | None = None, log_output: bool = False, progress: bool = False,
                 stderr: TextIO | None = None, env: Mapping[str, str] | None = None) -> Any:
    """Execute a jupytext page with papermill (parameters injected after the `parameters` cell).

    The kernel's stderr (one line per epoch) is echoed to `stderr`, or with `progress` to this process's. `env`
    is added to the kernel's environment (this process's is left alone: kernels started at once differ)."""
    import jupytext
    import papermill

    notebook = jupytext.read(page)
    env_before = os.environ.get("TQDM_MININTERVAL")
    os.environ["TQDM_MININTERVAL"] = env_before or "30"  # keep progress text out of saved notebooks
    extra = {"kernel_manager_class": kernel_manager_with_env(env)} if env else {}
    try:
        return papermill.execute_notebook(notebook, str(output), parameters=parameters, kernel_name="python3",
                                          cwd=str(cwd) if cwd else None, log_output=log_output,
                                          progress_bar=False,
                                          stderr_file=stderr or (sys.stderr if progress else None), **extra)
    finally:
        if env_before is None:
            os.environ.pop("TQDM_MININTERVAL", None)


def kernel_manager_with_env(env: Mapping[str, str]) -> type:
    """A jupyter_client kernel manager class whose kernels start with `env` added to this process's environment
    (papermill hands it to nbclient, which starts the kernel with it)."""
    from jupyter_client.manager import AsyncKernelManager

    added = dict(env)

    class KernelManagerWithEnv(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **added}
            await super().start_kernel(**kw)

    return KernelManagerWithEnv


@contextlib.contextmanager
def kernel_environment(jobs: int) -> Iterator[None]:
    """While runs execute: tqdm's slow refresh (progress text stays out of saved notebooks) and, with several
    runs at once, each its share of the cores (unless OMP_NUM_THREADS is set); restored afterwards."""
    env = {"TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL") or "30"}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def stop_kernels_on_signal(stopping: Callable[[int, signal.Signals], None]) -> Iterator[None]:
    """While active (in the main thread), SIGTERM/SIGINT reach this process's kernels started meanwhile: SIGTERM
    (each run keeps its last complete epoch), SIGKILL at a second signal; `stopping(signum, how)` is told first.
    Kernels run in sessions of their own, so a signal to this process alone would never reach them."""
    since, received = time.time() - 1.0, []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        how = signal.SIGTERM if len(received) == 1 else signal.SIGKILL
        stopping(signum, how)
        for pid in kernel_pids(since):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, how)

    with signals_handled(handler):
        yield


def kernel_pids(since: float) -> list[int]:
    """Process ids of this process's Jupyter kernels started at or after `since` (a `time.time()`)."""
    import psutil  # a dependency of ipykernel, hence there whenever papermill runs kernels

    pids = []
    for child in psutil.Process().children(recursive=False):
        with contextlib.suppress(psutil.Error):
            if child.create_time() >= since and any("ipykernel" in part for part in child.cmdline()):
                pids.append(child.pid)
    return pids


def _is_progress(text: str) -> bool:
    """A progress-bar chunk: carriage returns, or nothing left once cursor escapes and blanks are gone."""
    import re

    return "\r" in text or not re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).strip()


def strip_images(path: str | Path) -> int:
    """Drop image data and progress-bar streams from an executed notebook (for committing results).

    Returns the number of outputs removed. nbval does not compare images, and progress bars only appear in
    cells marked nbval-ignore-output, so a stripped notebook still reproduces under strict nbval.
    """
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    removed = 0
    for cell in notebook.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not (o.get("name") == "stderr" and _is_progress(o.get("text", "")))]
        removed += len(outputs) - len(kept)
        if "outputs" in cell:
            cell["outputs"] = kept
        for output in kept:
            data = output.get("data", {})
            for key in [k for k in data if k.startswith("image/")]:
                del data[key]
                removed += 1
    nbformat.write(notebook, str(path))
    return removed

"""Offer every notebook page of the book as an `.ipynb` download (the executed notebook of the build).

sphinx-book-theme adds the `.ipynb` entry to its download button only when a launch service (Binder, Colab...)
is configured; this book is built offline, so this extension copies the notebook MyST-NB executed into
`_sources/` and sets the same context value the theme reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def add_ipynb_source(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Copy `_build/jupyter_execute/PAGE.ipynb` to `_sources/` and point the download button at it."""
    if "kernelspec" not in app.env.metadata.get(pagename, {}):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(executed, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def setup(app: Any) -> dict:
    app.connect("html-page-context", add_ipynb_source, priority=400)  # before the theme builds its buttons
    return {"parallel_read_safe": True, "parallel_write_safe": True}

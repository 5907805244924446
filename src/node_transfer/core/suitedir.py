"""The suite directory: its file names, its runs' directory names, its description (`suite.json`, written
atomically by one writer) and its report's file names; and where run and suite directories go by default.

A suite directory holds `suite.json` (what was planned, timings, placement), `runs.csv` (one row per finished
run), one run directory per configuration and seed (`LABEL-sSEED`, see `rundir` for their files), the executed
notebooks beside them, and `report/` (`node-transfer report`). Light on purpose (no torch): result readers use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_write, atomic_write_text

#: Where `node-transfer run`, `suite` and `demo` put their directories when no --out is given.
RUNS_ROOT = Path("runs")
SUITE_META = "suite.json"
RUNS_TABLE = "runs.csv"
REPORT_DIR = "report"
TABLES = "tables.md"  # a report's tables (suite or single run)
RUN_CURVES = "curves.png"  # a single run's report
ALL_CURVES = "curves-all.png"
ESTIMATION = "estimation.png"
TOLERANCE = "tolerance.png"
COST_ACCURACY = "cost-accuracy.png"


def run_dir_name(label: str, seed: int | str) -> str:
    """The directory of one configuration and seed: `LABEL-sSEED` (`seed` may be a glob such as "*")."""
    return f"{label}-s{seed}"


def curves_name(label: str) -> str:
    """A suite report's learning curves of one configuration."""
    return f"curves-{label}.png"


def table_name(stem: str) -> str:
    """A suite report's table as CSV."""
    return f"{stem}.csv"


def notebook_name(key: str) -> str:
    """The executed notebook kept beside a suite's run directory (`key`: its run directory's name)."""
    return f"{key}.ipynb"


def read_suite_meta(suite_dir: str | Path) -> dict[str, Any]:
    """A suite's `suite.json`; DataError naming it when missing or not a JSON object."""
    from .rundir import read_json  # rundir imports torch; reading results should not

    return read_json(Path(suite_dir) / SUITE_META, "suite description")


def has_suite_meta(suite_dir: str | Path) -> bool:
    """Whether `suite_dir` holds a `suite.json`."""
    return (Path(suite_dir) / SUITE_META).is_file()


def write_suite_meta(meta: dict[str, Any], suite_dir: str | Path) -> None:
    """`suite.json`, replaced atomically (the only writer of it)."""
    atomic_write_text(json.dumps(meta, indent=2) + "\n", Path(suite_dir) / SUITE_META)


def read_runs_table(suite_dir: str | Path) -> pd.DataFrame:
    """A suite's `runs.csv` (pandas' errors when it is missing or unreadable)."""
    return pd.read_csv(Path(suite_dir) / RUNS_TABLE)


def write_csv(frame: pd.DataFrame, path: str | Path, **options: Any) -> None:
    """A table as CSV, replaced atomically (`runs.csv`, a report's tables)."""
    atomic_write_text(frame.to_csv(index=False, **options), path)


def write_runs_table(runs: pd.DataFrame, suite_dir: str | Path) -> Path:
    """`runs.csv`, replaced atomically; returns its path."""
    path = Path(suite_dir) / RUNS_TABLE
    write_csv(runs, path)
    return path


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """A matplotlib figure as PNG, replaced atomically."""
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=dpi))

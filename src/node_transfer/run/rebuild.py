"""Recovering the checkpoints of a finished run by running it again, checked against the committed results.

Committed suites keep each run's `config.json`, `history.csv` and `metrics.json` but never its weights, and a
run continued from another (`init_from`) needs that run's `best.pt`. On a fresh machine the base run is trained
again into `NAME.rebuild`; only when every deterministic number of its history and metrics equals the committed
ones (timings and memory excepted) are its checkpoints moved into the committed run directory. Otherwise nothing
committed is touched: the suite stops and names the first difference. The rebuild runs with `reproduce_run` set,
so it stops at the first epoch that differs instead of training to the end first: on another CPU model (another
SIMD path in oneDNN and the BLAS) a fine-tuned run drifts from its first epoch on.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.checkpoints import atomic_save, load_checkpoint
from ..core.errors import SuiteRunError, TrainingError
from ..core.rundir import BEST, HISTORY, LAST, METRICS, read_history, read_json

# Numbers that measure the machine, not the training: they may differ between two runs of the same config.
MACHINE_DEPENDENT = ("seconds", "seconds_per_epoch", "feature_seconds", "images_per_s", "peak_memory_mb",
                     "memory_kind")


def needs_rebuild(run_dir: Path) -> bool:
    """A finished run (metrics.json) whose checkpoints are not here (a committed run on a new machine)."""
    return (run_dir / METRICS).is_file() and not (run_dir / LAST).is_file()


def rebuild_dir(run_dir: Path) -> Path:
    """Where a finished run is trained again to recover its checkpoints."""
    return run_dir.with_name(f"{run_dir.name}.rebuild")


def epoch_difference(committed: pd.DataFrame, record: Mapping[str, Any]) -> str | None:
    """How one epoch of a run differs from the same epoch of a committed history (timings excepted), or None."""
    epoch = int(record["epoch"])
    rows = committed[committed["epoch"] == epoch]
    if rows.empty:
        return f"{HISTORY} has epoch {epoch}, the committed one {len(committed)} epochs"
    row = rows.iloc[0]
    for column in [c for c in committed.columns if c not in MACHINE_DEPENDENT]:
        if column not in record:
            return f"{HISTORY} has no column {column!r}"
        if not _same(row[column], record[column]):
            return f"{HISTORY} epoch {epoch} {column}: committed {row[column]!r}, now {record[column]!r}"
    return None


def check_reproduces(committed: pd.DataFrame, record: Mapping[str, Any], reproduce_run: str) -> None:
    """TrainingError at the first epoch whose numbers differ from the run in `reproduce_run` (kept as is)."""
    difference = epoch_difference(committed, record)
    if difference is not None:
        raise TrainingError(f"this run does not reproduce {reproduce_run} ({difference}); it stopped after epoch "
                            f"{record['epoch']}, which it keeps; {reproduce_run} is unchanged")


def first_difference(committed: Path, rebuilt: Path) -> str | None:
    """The first deterministic number in which two runs' `history.csv` or `metrics.json` differ, or None."""
    old, new = read_history(committed), read_history(rebuilt)
    if len(old) != len(new):
        return f"{HISTORY} has {len(new)} epochs, the committed one {len(old)}"
    for record in new.to_dict("records"):
        difference = epoch_difference(old, record)
        if difference is not None:
            return difference
    old_metrics = read_json(committed / METRICS, "run metrics")
    new_metrics = read_json(rebuilt / METRICS, "run metrics")
    for key, value in old_metrics.items():
        if key not in MACHINE_DEPENDENT and not _same(value, new_metrics.get(key)):
            return f"{METRICS} {key}: committed {value!r}, rebuilt {new_metrics.get(key)!r}"
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def adopt_checkpoints(run_dir: Path, rebuilt: Path) -> None:
    """Move a verified rebuild's `last.pt` and `best.pt` into the committed run directory, naming it as their
    run's `out`; the rebuild directory is removed."""
    for name in (LAST, BEST):
        checkpoint = load_checkpoint(rebuilt / name, parameter="init_from")
        if isinstance(checkpoint.get("config"), dict):
            checkpoint["config"]["out"] = str(run_dir)
        atomic_save(checkpoint, run_dir / name)
    shutil.rmtree(rebuilt)


def verify_rebuild(run_dir: Path, rebuilt: Path) -> None:
    """Adopt the rebuild's checkpoints if it reproduced the committed run; else raise, changing nothing."""
    difference = first_difference(run_dir, rebuilt)
    if difference is not None:
        raise rebuild_failed(run_dir, rebuilt, difference)
    adopt_checkpoints(run_dir, rebuilt)


def rebuild_failed(run_dir: Path, rebuilt: Path, difference: str) -> SuiteRunError:
    """The error of a rebuild that did not reproduce the committed run (nothing committed was changed)."""
    return SuiteRunError(
        f"{run_dir.name} was trained again to recover its checkpoints, but the result differs from the "
        f"committed one ({difference}); nothing committed was changed. The rebuild is kept in {rebuilt}: "
        "compare the two, then either restore the original checkpoints (runs reproduce bit for bit only on the "
        "CPU model that made them) or start this seed again")

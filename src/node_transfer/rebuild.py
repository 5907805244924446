"""Recovering the checkpoints of a finished run by running it again, checked against the committed results.

Committed suites keep each run's `config.json`, `history.csv` and `metrics.json` but never its weights, and a
run continued from another (`init_from`) needs that run's `best.pt`. On a fresh machine the base run is trained
again into `NAME.rebuild`; only when every deterministic number of its history and metrics equals the committed
ones (timings and memory excepted) are its checkpoints moved into the committed run directory. Otherwise nothing
committed is touched: the suite stops and names the first difference.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from .checkpoints import atomic_save, load_checkpoint
from .errors import SuiteRunError
from .rundir import BEST, HISTORY, LAST, METRICS, read_json

# Numbers that measure the machine, not the training: they may differ between two runs of the same config.
MACHINE_DEPENDENT = ("seconds", "seconds_per_epoch", "feature_seconds", "images_per_s", "peak_memory_mb",
                     "memory_kind")


def needs_rebuild(run_dir: Path) -> bool:
    """A finished run (metrics.json) whose checkpoints are not here (a committed run on a new machine)."""
    return (run_dir / METRICS).is_file() and not (run_dir / LAST).is_file()


def rebuild_dir(run_dir: Path) -> Path:
    """Where a finished run is trained again to recover its checkpoints."""
    return run_dir.with_name(f"{run_dir.name}.rebuild")


def first_difference(committed: Path, rebuilt: Path) -> str | None:
    """The first deterministic number in which two runs' `history.csv` or `metrics.json` differ, or None."""
    old, new = pd.read_csv(committed / HISTORY), pd.read_csv(rebuilt / HISTORY)
    if len(old) != len(new):
        return f"{HISTORY} has {len(new)} epochs, the committed one {len(old)}"
    for column in [c for c in old.columns if c not in MACHINE_DEPENDENT]:
        if column not in new.columns:
            return f"{HISTORY} has no column {column!r}"
        for epoch, a, b in zip(old["epoch"], old[column], new[column]):
            if not _same(a, b):
                return f"{HISTORY} epoch {epoch} {column}: committed {a!r}, rebuilt {b!r}"
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
        raise SuiteRunError(
            f"{run_dir.name} was trained again to recover its checkpoints, but the result differs from the "
            f"committed one ({difference}); nothing committed was changed. The rebuild is kept in {rebuilt}: "
            f"compare the two, then either restore the original checkpoints or start this seed again")
    adopt_checkpoints(run_dir, rebuilt)

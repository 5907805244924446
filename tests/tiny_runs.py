"""Tiny runs for the engine's tests: a head trained for seconds on cached features of the frozen Lite0 backbone,
on scikit-learn's 8x8 digits at 32 px. One `run()`, one `comparable()`; the two settings below differ on purpose
only in what each suite of tests checks, and say so in their names."""

from pathlib import Path

import pandas as pd

from node_transfer import ExperimentConfig
from node_transfer.run.experiment import run_experiment

TINY = dict(dataset="digits", image_size=32, freeze_backbone=True, cache_features=True, augment=False, epochs=3,
            lr=3e-3)
# test_training: runs that must learn (test accuracy far above chance in 3 epochs), batches of 64, a 64-wide ODE
LEARNING_RUN = {**TINY, "batch_size": 64}
LEARNING_NODE = dict(head="node", ode_width=64, solver="dopri5", rtol=1e-3, atol=1e-3)
# test_faults: runs that are broken and resumed, their numbers compared bit for bit: an FC head by default,
# batches of 32 (more steps between checkpoints), a 32-wide ODE
FAULT_RUN = {**TINY, "batch_size": 32, "head": "fc", "fine_evals": 0}  # faults of the epoch's own validation
FAULT_NODE = dict(head="node", ode_width=32, solver="dopri5", rtol=1e-3, atol=1e-3)


def run(tmp_path: Path, name: str, **params) -> Path:
    """One run in `tmp_path / name`, without progress output; returns its run directory."""
    return run_experiment(ExperimentConfig(out=str(tmp_path / name), **params), progress=False)


def comparable(history: pd.DataFrame) -> pd.DataFrame:
    """A history without its clocks: what must be equal between two runs of one configuration."""
    return history.drop(columns=["seconds", "images_per_s"])

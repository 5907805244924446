"""Whether a run may be resumed with a configuration, whether it has anything left to do, and the seeds that let a
resumed run replay its epochs exactly."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import rundir
from ..core.config import ExperimentConfig
from ..core.errors import ConfigError
from ..core.speed import with_legacy

#: What a resumed run may change; every other parameter must equal the saved one.
RESUME_MAY_CHANGE = ("epochs", "target_val_acc", "patience", "device", "num_workers", "data_dir", "download",
                     "feature_cache", "on_solver_failure", "fallback_solver", "fallback_step_size", "max_num_steps",
                     "amp", "reproduce_run", "out", "resume", "fine_evals", "fine_val_size")


def check_resume(config: ExperimentConfig, checkpoint: dict[str, Any], run_dir: Path) -> None:
    """ConfigError unless `config` may continue the run saved in `checkpoint` (same model, data, split, seed)."""
    saved = with_legacy(checkpoint.get("config") or {})  # a run made before a setting used its legacy value
    for name in ExperimentConfig.field_names():
        if name not in RESUME_MAY_CHANGE and name in saved and getattr(config, name) != saved[name]:
            raise ConfigError(name, getattr(config, name), f"{saved[name]!r}, as saved in {str(run_dir)!r}: a resumed "
                              f"run keeps its configuration except {', '.join(RESUME_MAY_CHANGE[:-2])}")
    if config.epochs < checkpoint["epoch"]:
        raise ConfigError("epochs", config.epochs, f"at least {checkpoint['epoch']}, the epochs already done in "
                          f"{str(run_dir)!r}")


def is_finished(run_dir: Path, checkpoint: dict[str, Any], config: ExperimentConfig) -> bool:
    """Whether a run has its metrics and nothing left to train under `config` (epochs, target)."""
    reached = early_stop_reason(checkpoint.get("history") or [], config) is not None
    return (run_dir / rundir.METRICS).is_file() and (checkpoint["epoch"] >= config.epochs or reached)


def early_stop_reason(history: list[dict[str, Any]], config: ExperimentConfig) -> str | None:
    """Why training stops before `config.epochs` after these epochs, or None: the validation target reached, or
    no new lowest validation loss for `config.patience` epochs (a run trained until it has converged)."""
    if not history:
        return None
    if config.target_val_acc is not None and history[-1]["val_acc"] >= config.target_val_acc:
        return f"reached target_val_acc={config.target_val_acc} at epoch {history[-1]['epoch']}"
    if config.patience > 0:
        losses = [record["val_loss"] if math.isfinite(record["val_loss"]) else math.inf for record in history]
        best = min(range(len(losses)), key=losses.__getitem__)
        if len(losses) - 1 - best >= config.patience:
            return (f"no lower validation loss for {config.patience} epochs after epoch {history[best]['epoch']} "
                    f"(patience={config.patience}), stopped at epoch {history[-1]['epoch']}")
    return None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (the model's initialisation, each epoch's draws)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch of one run: resume replays it without saved RNG states."""
    return (seed * 1_000_003 + epoch * 7919) % 2**63

"""Fine curves: the training loss of every batch and a fixed validation subset evaluated several times per epoch.

Epoch-level curves give a continuation of 4-8 epochs 3-9 points, too few for any statistic of stability. A run
with `fine_evals` > 0 also writes `fine.csv` beside `history.csv`: one row per training batch (epoch, batch, global
step, its training loss) and, on the rows after which it was evaluated, the loss and accuracy of a fixed validation
subset (the first `fine_val_size` validation images, the same every time), `fine_evals` times per epoch at evenly
spaced batches, the last at the epoch's end. The subset's loader has a generator of its own, so a run draws the same
random numbers with or without fine curves and computes the same epochs. `bench/fine_curves.py` states the cost:
a subset of 1,000 images cost the overfitting regime's `rk` arm 45 % more CPU time per epoch (training is only about
four times the cost of inference per image there), so the default subset is 100 images (a fixed subset: its loss
moves only when the model does, so a small one still shows the wobble).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset, Subset

from ..core import rundir
from ..model.tensor_images import ImageTensors, make_loader


class Evaluates(Protocol):
    """What the fine curves need of the trainer: an evaluation of a loader, and a way back to training mode."""

    def evaluate(self, loader: Any, epoch: int | None = None, stage: str = "validation") -> dict[str, float]: ...

    def train_mode(self) -> None: ...


def evaluation_points(batches: int, evaluations: int) -> set[int]:
    """The batches (1-based) after which the subset is evaluated: `evaluations` evenly spaced, the last one last."""
    return {max(1, round(batches * (k + 1) / evaluations)) for k in range(min(evaluations, batches))}


def validation_subset(val_set: Dataset, size: int) -> Dataset:
    """The first `size` images of the validation split (all of it when it is smaller)."""
    chosen = range(min(size, len(val_set)))
    return val_set.subset(chosen) if isinstance(val_set, ImageTensors) else Subset(val_set, chosen)


class FineCurves:
    """Collects one run's fine curves and keeps `fine.csv` in step with its checkpoints."""

    def __init__(self, trainer: Evaluates, val_set: Dataset, evaluations: int, size: int, **loader_args: Any):
        self.trainer, self.evaluations = trainer, evaluations
        self.loader = make_loader(validation_subset(val_set, size), generator=torch.Generator(), **loader_args)
        self.rows: list[dict[str, Any]] = []

    def after_batch(self, epoch: int, batch: int, batches: int, loss: torch.Tensor) -> None:
        """Record a training batch's loss (0-based epoch and batch) and evaluate the subset where it is due."""
        row = {"epoch": epoch + 1, "batch": batch + 1, "step": epoch * batches + batch + 1, "train_loss": loss.item()}
        if batch + 1 in evaluation_points(batches, self.evaluations):
            subset = self.trainer.evaluate(self.loader, epoch, "the fine-curve validation subset")
            self.trainer.train_mode()
            row.update(val_loss=subset["loss"], val_acc=subset["acc"])
        self.rows.append(row)

    def restore(self, run_dir: Path, epochs_done: int) -> None:
        """On resume: the rows of the epochs the checkpoint holds (a killed epoch's rows are dropped)."""
        saved = rundir.read_fine_curves(run_dir)
        self.rows = saved[saved["epoch"] <= epochs_done].to_dict("records")

    def save(self, run_dir: Path) -> None:
        rundir.write_history(self.rows, run_dir / rundir.FINE_CURVES, rundir.FINE_COLUMNS)

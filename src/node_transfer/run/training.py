"""The training loop: epochs of train + validation, NFE accounting, checkpoints, resume, faults, DDP.

Randomness is re-seeded at the start of every epoch from (seed, epoch), so a run resumed from the
checkpoint of epoch k replays epochs k+1.. exactly as an uninterrupted run would (on the same device and
torch build).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm

from ..core import rundir
from ..core.calibration import CalibrationBins
from ..core.config import ExperimentConfig
from ..core.distributed import DistInfo
from ..core.errors import DivergedError, ODESolveError, TrainingError
from ..model.heads import ode_blocks
from ..model.tensor_images import make_loader
from ..model.transfer import TransferModel
from .fine_curves import FineCurves
from .optim import make_optimizer, make_scheduler
from .rebuild import check_reproduces
from .resume import early_stop_reason, epoch_seed, seed_everything


@dataclass
class TrainState:
    """What a checkpoint restores: the epochs done, their history, the best validation accuracy so far."""

    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    fallbacks: int = 0
    stopped_early: bool = False


class Trainer:
    """Trains `model` on `train_set`, validating on `val_set`; `forward` is the model or (cached) its head."""

    def __init__(self, model: TransferModel, config: ExperimentConfig, train_set: Dataset, val_set: Dataset,
                 device: torch.device, run_dir: Path, dist: DistInfo | None = None, cached: bool = False,
                 progress: bool = True) -> None:
        self.model, self.config, self.device, self.run_dir = model, config, device, run_dir
        self.dist, self.cached = dist or DistInfo(), cached
        self.progress = progress and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")
        # a live bar on a terminal; one line per epoch elsewhere (a notebook's outputs, a log file)
        self.bars = self.progress and sys.stderr.isatty()
        dist = self.dist
        self.train_module: nn.Module = model.head if cached else model
        self.optimizer = make_optimizer(config, self.train_module.parameters())
        self.scheduler = make_scheduler(config, self.optimizer)
        self.blocks = ode_blocks(model)
        # bf16 autocast is for the backbone; a cached head runs float32 (TransferModel.forward's rule, not taken here)
        self.amp = config.amp and device.type == "cuda" and not cached
        self.state = TrainState()
        self.forward: Callable = self.train_module
        if dist.active:
            ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            self.forward = nn.parallel.DistributedDataParallel(self.train_module, **ddp_kwargs)
        self.generator = torch.Generator()
        self.sampler = DistributedSampler(train_set, dist.world_size, dist.rank, seed=config.seed) \
            if dist.active else None
        loader_args = dict(batch_size=config.batch_size, num_workers=config.num_workers,
                           pin_memory=device.type == "cuda")
        self.train_loader = make_loader(train_set, shuffle=self.sampler is None, sampler=self.sampler,
                                        generator=self.generator, **loader_args)
        self.val_loader = make_loader(val_set, **loader_args)
        self.fine = FineCurves(self, val_set, config.fine_evals, config.fine_val_size, **loader_args) \
            if config.fine_evals else None

    # -- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.state.epochs_done, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "history": self.state.history, "best_val_acc": self.state.best_val_acc,
                "best_epoch": self.state.best_epoch, "fallbacks": self.state.fallbacks,
                "stopped_early": self.state.stopped_early, "config": self.config.to_dict(),
                "num_classes": self.model.head.fc.out_features, "torch_threads": torch.get_num_threads(),
                "solvers": [{"solver": b.settings.solver, "step_size": b.settings.step_size,
                             "fallback_used": b.fallback_used} for b in self.blocks]}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a `last.pt` (resume)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.state = TrainState(checkpoint["epoch"], list(checkpoint["history"]), checkpoint["best_val_acc"],
                                checkpoint["best_epoch"], checkpoint["fallbacks"], checkpoint["stopped_early"])
        for block, saved in zip(self.blocks, checkpoint.get("solvers", [])):
            if saved["fallback_used"]:
                block.use_fallback(saved["solver"], saved["step_size"])
        if self.fine:
            self.fine.restore(self.run_dir, self.state.epochs_done)

    def _save(self, improved: bool) -> None:
        if not self.dist.is_main:
            return
        rundir.save_checkpoints(self.checkpoint(), self.run_dir, improved)
        rundir.write_history(self.state.history, self.run_dir / rundir.HISTORY)
        if self.fine:
            self.fine.save(self.run_dir)

    # -- one step
    def _loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.forward(inputs)
        loss = F.cross_entropy(logits.float(), labels)
        for block in self.blocks:
            for name, value in block.regularization.items():
                loss = loss + getattr(self.config, f"{name}_weight") * value
        return loss, logits

    def _describe(self, epoch: int | None, batch: int, stage: str = "training") -> str:
        solvers = ", ".join(f"solver={b.settings.solver}, rtol={b.settings.rtol:g}, atol={b.settings.atol:g}, "
                            f"NFE forward={b.nfe_forward}" for b in self.blocks) or "FC head"
        where = f"epoch {epoch + 1}, batch {batch + 1}" if epoch is not None else f"batch {batch + 1}"
        return f"{where} of {stage} ({solvers})"

    def _kept(self) -> str:
        """What a stopped run keeps, as the message says it."""
        if (self.run_dir / rundir.LAST).is_file():
            return f"The last good checkpoint and history are kept in {self.run_dir}."
        return f"No epoch was complete, so no checkpoint exists in {self.run_dir}; run it again."

    def _solver_failed(self, exc: ODESolveError, where: str, attempt: int) -> None:
        """Fall back to the fixed-step solver (on_solver_failure='fallback', once), or stop with a TrainingError."""
        if self.config.on_solver_failure != "fallback":
            raise TrainingError(f"{exc} at {where}. {self._kept()} on_solver_failure='fallback' switches to a "
                                "fixed-step solver instead of stopping.") from exc
        if attempt > 0 or all(b.fallback_used for b in self.blocks):
            raise DivergedError(f"{exc} at {where}, and on_solver_failure='fallback' cannot help: the fallback "
                                f"solver {self.config.fallback_solver} with step {self.config.fallback_step_size} "
                                f"is the one that failed. {self._kept()}") from exc
        for block in self.blocks:
            block.use_fallback(self.config.fallback_solver, self.config.fallback_step_size)
        self.state.fallbacks += 1
        warnings.warn(f"{exc} at {where}: falling back to {self.config.fallback_solver} with step "
                      f"{self.config.fallback_step_size}", stacklevel=3)

    def _train_step(self, inputs, labels, epoch: int, batch: int):
        for attempt in range(2):
            try:
                loss, logits = self._loss(inputs, labels)
                if not torch.isfinite(loss):
                    raise DivergedError(f"non-finite loss ({loss.item()}) at {self._describe(epoch, batch)}. "
                                        f"{self._kept()}")
                self.optimizer.zero_grad(set_to_none=True)
                with contextlib.ExitStack() as stack:
                    for block in self.blocks:
                        stack.enter_context(block.translate_errors())
                    loss.backward()
                self.optimizer.step()
                return loss.detach(), logits.detach()
            except ODESolveError as exc:
                self._solver_failed(exc, self._describe(epoch, batch), attempt)
        raise AssertionError("unreachable")

    # -- epochs
    def train_epoch(self, epoch: int) -> dict[str, float]:
        seed = epoch_seed(self.config.seed, epoch)
        seed_everything(seed)
        self.generator.manual_seed(seed)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.train_mode()
        totals = dict(loss=0.0, correct=0, seen=0, nfe_forward=0, nfe_backward=0, batches=0)
        regs = {"kinetic": 0.0, "jacobian": 0.0}
        start = time.perf_counter()
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not (self.bars and self.dist.is_main))
        for batch, (inputs, labels) in enumerate(bar):
            inputs, labels = inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            loss, logits = self._train_step(inputs, labels, epoch, batch)
            totals["loss"] += loss.item() * len(labels)
            totals["correct"] += (logits.argmax(1) == labels).sum().item()
            totals["seen"] += len(labels)
            totals["batches"] += 1
            for block in self.blocks:
                totals["nfe_forward"] += block.nfe_forward
                totals["nfe_backward"] += block.nfe_backward
                for name, value in block.regularization.items():
                    regs[name] += value.item()
            if self.fine:  # after the counters: an evaluation resets the blocks' NFE
                self.fine.after_batch(epoch, batch, len(self.train_loader), loss)
            bar.set_postfix(loss=f"{totals['loss'] / totals['seen']:.3f}",
                            nfe=totals["nfe_forward"] // max(totals["batches"], 1))
        seconds = time.perf_counter() - start
        n = max(totals["batches"], 1)
        return {"train_loss": totals["loss"] / max(totals["seen"], 1), "train_acc": totals["correct"] /
                max(totals["seen"], 1), "nfe_forward": totals["nfe_forward"] / n,
                "nfe_backward": totals["nfe_backward"] / n, "reg_kinetic": regs["kinetic"] / n,
                "reg_jacobian": regs["jacobian"] / n, "images_per_s": totals["seen"] / seconds}

    def train_mode(self) -> None:
        """The trained module in training mode (a frozen backbone keeps its BatchNorm statistics)."""
        self.train_module.train()
        if self.config.freeze_backbone:
            self.model.backbone.eval()

    def _eval_logits(self, inputs: torch.Tensor, epoch: int | None, batch: int, stage: str,
                     fallback: bool = True) -> torch.Tensor:
        """Logits in evaluation; a solver failure falls back or stops, naming where (no `fallback`: raised as is)."""
        for attempt in range(2):
            try:
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    return self.train_module(inputs).float()
            except ODESolveError as exc:
                if not fallback:
                    raise
                self._solver_failed(exc, self._describe(epoch, batch, stage), attempt)
        raise AssertionError("unreachable")

    @torch.no_grad()
    def evaluate(self, loader: Iterable, epoch: int | None = None, stage: str = "validation",
                 fallback: bool = True) -> dict[str, float]:
        """Loss (NLL), accuracy, expected calibration error and forward NFE per batch over a whole loader."""
        self.train_module.eval()
        loss = correct = seen = nfe = batches = 0
        calibration = CalibrationBins()
        for batch, (inputs, labels) in enumerate(loader):
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            logits = self._eval_logits(inputs, epoch, batch, stage, fallback)
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            calibration.add(logits, labels)
            seen += len(labels)
            batches += 1
            nfe += sum(block.nfe_forward for block in self.blocks)
        return self._shared({"loss": loss / max(seen, 1), "acc": correct / max(seen, 1), "nfe": nfe / max(batches, 1),
                             "ece": calibration.ece()})

    def _shared(self, values: dict[str, float]) -> dict[str, float]:
        """Rank 0's numbers on every rank, so that all take the same decisions (best checkpoint, early stop)."""
        if not self.dist.active:
            return values
        tensor = torch.tensor(list(values.values()), dtype=torch.float64,
                              device=self.device if self.device.type == "cuda" else "cpu")
        torch.distributed.broadcast(tensor, src=0)
        return dict(zip(values, tensor.tolist()))

    def fit(self) -> TrainState:
        """Train from `state.epochs_done` to `config.epochs` (or the validation target)."""
        config = self.config
        if self.state.history:  # resumed: the target or the patience may have changed since the run stopped
            reached = early_stop_reason(self.state.history, config) is not None
            self.state.stopped_early = reached and self.state.epochs_done < config.epochs
            if reached:
                return self.state
        committed = rundir.read_history(Path(config.reproduce_run)) if config.reproduce_run else None
        if committed is not None:  # a resumed rebuild: the epochs it already holds must reproduce too
            for record in self.state.history:
                check_reproduces(committed, record, config.reproduce_run)
        epochs = tqdm(range(self.state.epochs_done, config.epochs), desc="epochs", leave=True,
                      initial=self.state.epochs_done, total=config.epochs,
                      disable=not (self.bars and self.dist.is_main))
        for epoch in epochs:
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch(epoch)
            val = self.evaluate(self.val_loader, epoch)
            self.scheduler.step()
            record = {"epoch": epoch + 1, "train_loss": train["train_loss"], "train_acc": train["train_acc"],
                      "val_loss": val["loss"], "val_acc": val["acc"], "lr": lr,
                      "seconds": time.perf_counter() - start, "nfe_forward": train["nfe_forward"],
                      "nfe_backward": train["nfe_backward"], "nfe_eval": val["nfe"],
                      "reg_kinetic": train["reg_kinetic"], "reg_jacobian": train["reg_jacobian"],
                      "images_per_s": train["images_per_s"],
                      "solver": "+".join(b.settings.solver for b in self.blocks) or "none"}
            self.state.history.append(record)
            self.state.epochs_done = epoch + 1
            improved = val["acc"] > self.state.best_val_acc and math.isfinite(val["loss"])  # never an infinite loss
            if improved:
                self.state.best_val_acc, self.state.best_epoch = val["acc"], epoch + 1
            reached = early_stop_reason(self.state.history, config) is not None
            self.state.stopped_early = reached and epoch + 1 < config.epochs
            self._save(improved)
            if committed is not None:
                check_reproduces(committed, record, config.reproduce_run)
            epochs.set_postfix(val_acc=f"{val['acc']:.3f}", train_acc=f"{train['train_acc']:.3f}")
            if self.progress and not self.bars and self.dist.is_main:
                print(rundir.epoch_line(record, config.epochs), file=sys.stderr, flush=True)
            if reached:
                break
        return self.state

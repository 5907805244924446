"""One experiment, end to end: validate, build data and model, train, test, and write a run directory.

Parameters and paths are checked before the run directory is created; a run that fails or is killed before
its first checkpoint leaves a directory that a corrected rerun may reuse, and never touches an earlier run.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from .. import __version__
from ..core import rundir
from ..core.choices import HEAD_KINDS
from ..core.config import ExperimentConfig
from ..core.distributed import DistInfo, init_distributed, main_rank_decides, main_rank_first, resolve_device
from ..core.errors import BackboneError, ConfigError, DataError, FileWriteError, Interrupted, RunDirError, TrainingError
from ..core.memory import peak_memory_mb
from ..core.signals import signals_handled
from ..core.speed import settle
from ..core.suitedir import RUNS_ROOT, run_dir_name
from ..model.backbones import create_backbone, weights_source
from ..model.data import DataSplits, build_datasets
from ..model.tensor_images import make_loader
from ..model.transfer import TransferModel, apply_memory_format, head_from_config, load_initial_weights
from .features import cached_feature_sets
from .resume import check_resume, early_stop_reason, is_finished, seed_everything
from .solver_swap import solver_swap
from .training import Trainer, TrainState


def library_versions() -> dict[str, str]:
    import timm
    import torchdiffeq
    import torchvision

    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "torchdiffeq": getattr(torchdiffeq, "__version__", "unknown"),
            "node_transfer": __version__, "platform": platform.platform(), **cpu_description()}


def cpu_description() -> dict[str, str]:
    """The CPU model and the instruction set torch dispatches to: a rebuilt run reproduces bit for bit only on the
    same pair (bfloat16 autocast on CPU rounds differently with and without AVX-512)."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def new_run_dir(config: ExperimentConfig, root: Path = RUNS_ROOT) -> Path:
    """A fresh directory name under `root`; never an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = HEAD_KINDS[config.head].run_label(config)
    base = root / run_dir_name(f"{stamp}-{config.dataset}-{label}", config.seed)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def agreed_run_dir(config: ExperimentConfig, dist: DistInfo) -> Path:
    """`out`, or a new directory chosen by rank 0 and sent to every rank (their clocks and checks may differ)."""
    if config.out:
        return Path(config.out)
    chosen = [str(new_run_dir(config)) if dist.is_main else None]
    if dist.active:
        torch_dist.broadcast_object_list(chosen, src=0)
    return Path(chosen[0])


@dataclass
class Prepared:
    """A validated experiment, ready to train: nothing has been written yet."""

    config: ExperimentConfig
    model: TransferModel
    splits: DataSplits
    device: torch.device
    dist: DistInfo
    resolved: dict[str, Any]
    init_checkpoint: dict[str, Any] | None


def prepare(config: ExperimentConfig, check_paths: bool = True) -> Prepared:
    """Validate parameters and build data and model; raises before anything is written.

    `auto` settings are settled here (see `speed`): a run continued from another takes that run's."""
    config.validate(check_paths=check_paths)
    init_checkpoint = rundir.load_init_from(Path(config.init_from)) if config.init_from else None
    source = init_checkpoint.get("config") if init_checkpoint is not None else None  # our runs' checkpoints hold it
    config = settle(config, source if isinstance(source, dict) else None)
    dist = init_distributed(config.device)
    device = resolve_device(config.device, dist)
    seed_everything(config.seed)
    with main_rank_first(dist):
        backbone, data_config = create_backbone(config.backbone, config.weights)
        splits = build_datasets(config.dataset, config.data_dir, config.download, config.image_size,
                                config.val_size, config.seed, data_config, augment=config.augment and not
                                config.cache_features, train_subset=config.train_subset, data_path=config.data_path)
    num_features = backbone.num_features
    seed_everything(config.seed)  # the head's init must not depend on what loading the backbone consumed
    model = TransferModel(backbone, head_from_config(config, num_features, splits.num_classes))
    head_taken = []
    if init_checkpoint is not None:
        head_taken = load_initial_weights(model, init_checkpoint, config.init_from)
    if config.freeze_backbone:
        model.backbone.requires_grad_(False)
    model.to(device)
    apply_memory_format(model, config.memory_format, device)
    resolved = {
        **config.to_dict(), "device_resolved": str(device), "world_size": dist.world_size,
        "num_classes": splits.num_classes, "class_names": splits.class_names,
        "num_features": num_features, "data_config": {k: v for k, v in data_config.items() if k != "crop_mode"},
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "init_from_head_tensors": head_taken, "versions": library_versions(),
        "torch_threads": torch.get_num_threads(), "weights_source": weights_source(config.backbone, config.weights),
    }
    return Prepared(config, model, splits, device, dist, resolved, init_checkpoint)


@contextlib.contextmanager
def signals_as_errors() -> Iterator[None]:
    """SIGTERM raises `Interrupted` (in the main thread), so the run can say what it keeps and clean up."""

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    with signals_handled(handler, [signal.SIGTERM]):
        yield


@contextlib.contextmanager
def threads_as_saved(resume_point: dict[str, Any] | None) -> Iterator[None]:
    """A resumed run computes with the intra-op thread count it was started with, restored afterwards: the CPU
    kernels split their sums by thread, so another count moves the last bits (1 vs 2 threads: test_loss in the
    8th digit), and a resume would no longer equal the uninterrupted run."""
    saved = (resume_point or {}).get("torch_threads")
    before = torch.get_num_threads()
    if not isinstance(saved, int) or saved == before:  # a checkpoint from before it was recorded: as given
        yield
        return
    torch.set_num_threads(saved)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _kept(run_dir: Path) -> str:
    if (run_dir / rundir.LAST).is_file():
        return (f"the last complete epoch is kept in {run_dir / rundir.LAST}; continue with "
                f"`node-transfer run --out {run_dir} --resume`")
    return f"no epoch was complete; run it again with the same --out ({run_dir} may be reused)"


class _NotStarted(Exception):
    """A data or weights error raised while the run was being built, before any epoch: carried out of `_run`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def run_experiment(config: ExperimentConfig, progress: bool = True) -> Path:
    """Run one experiment and return its run directory (config.json, history.csv, metrics.json, *.pt)."""
    config.validate()
    dist = init_distributed(config.device)
    run_dir = agreed_run_dir(config, dist)
    resume_point = None
    if config.resume and (run_dir / rundir.LAST).is_file():
        resume_point = rundir.load_last(run_dir, repair=dist.is_main)
        config = settle(config, resume_point.get("config") or {})  # `auto`: as the run was started
        check_resume(config, resume_point, run_dir)
        if is_finished(run_dir, resume_point, config):
            print(f"{run_dir} is finished ({resume_point['epoch']} epochs): nothing to do, {rundir.METRICS} kept; "
                  f"pass a larger epochs (or another target_val_acc or patience) to extend it", file=sys.stderr)
            return run_dir
    claimed = main_rank_decides(dist, lambda: rundir.claim_run_dir(run_dir, resume_point is not None),
                                f"claim the run directory {run_dir}")
    handle, created = claimed if claimed is not None else (None, False)
    try:
        try:
            with signals_as_errors(), threads_as_saved(resume_point):
                return _run(config, run_dir, dist, resume_point, progress)
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT, f"interrupted by SIGINT; {_kept(run_dir)}") from None
        except Interrupted as exc:
            raise Interrupted(exc.signum, f"{exc}; {_kept(run_dir)}") from None
        except FileWriteError as exc:  # the message names the file and the cause ("no space left on device")
            raise RunDirError(f"{exc}; {_kept(run_dir)}") from None
        except OSError as exc:
            raise RunDirError(f"cannot write the run directory {run_dir} ({exc.__class__.__name__}: {exc}); "
                              f"{_kept(run_dir)}") from None
    except ConfigError:
        if dist.is_main and created and rundir.is_restartable(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # bad parameters leave nothing behind
        raise
    except _NotStarted as not_started:  # so do missing data or weights, unless the directory was there before
        if dist.is_main and created and rundir.is_restartable(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            if not config.out:  # the runs/ folder made for it, when it holds nothing else
                with contextlib.suppress(OSError):
                    run_dir.parent.rmdir()
        elif dist.is_main:
            rundir.write_error(run_dir, str(not_started.error))
        raise not_started.error from None
    except (TrainingError, DataError, BackboneError, RunDirError, Interrupted) as exc:
        if dist.is_main:
            rundir.write_error(run_dir, str(exc), marker=getattr(exc, "marker", None))
        raise
    finally:
        if handle is not None:
            rundir.remove_temp_files(run_dir)
            rundir.unlock(handle, run_dir)


def stop_reason(state: TrainState, config: ExperimentConfig) -> str | None:
    return early_stop_reason(state.history, config) if state.stopped_early else None


def _run(config: ExperimentConfig, run_dir: Path, dist: DistInfo, resume_point: dict[str, Any] | None,
         progress: bool) -> Path:
    try:
        prepared = prepare(config, check_paths=False)
    except (DataError, BackboneError) as exc:  # missing or corrupt data or weights: nothing was run
        raise _NotStarted(exc) from None
    model, splits, device, config = prepared.model, prepared.splits, prepared.device, prepared.config
    if dist.is_main:
        resolved = {**prepared.resolved, "started_at": rundir.started_at(run_dir)}  # kept from the first start
        rundir.write_json(resolved, run_dir / rundir.CONFIG)  # on resume: with the options given now
        if resume_point is not None:
            (run_dir / rundir.METRICS).unlink(missing_ok=True)  # extended: the old metrics no longer hold
            (run_dir / rundir.ERROR).unlink(missing_ok=True)

    train_set, val_set, test_set = splits.train, splits.val, splits.test
    start = time.perf_counter()
    feature_seconds = 0.0
    if config.cache_features:
        train_set, val_set, test_set = cached_feature_sets(prepared, progress)
        feature_seconds = time.perf_counter() - start
    trainer = Trainer(model, config, train_set, val_set, device, run_dir, dist, cached=config.cache_features,
                      progress=progress)
    if resume_point is not None:
        trainer.restore(resume_point)
        if dist.is_main:
            rundir.write_history(trainer.state.history, run_dir / rundir.HISTORY)  # a kill may have left it behind
    state = trainer.fit()
    if state.best_epoch == 0:
        raise TrainingError(f"no epoch had a finite validation loss, so there is no best checkpoint to test; "
                            f"{_kept(run_dir)}")
    train_seconds = sum(row["seconds"] for row in state.history)

    if dist.active:
        torch_dist.barrier()  # rank 0 has written best.pt
    model.load_state_dict(rundir.load_best(run_dir, state.best_epoch)["model"])
    test_loader = make_loader(test_set, batch_size=config.batch_size)
    test = trainer.evaluate(test_loader, None, "the test set")
    swap = solver_swap(model, lambda: trainer.evaluate(test_loader, None, "the test set (reference solver)",
                                                       fallback=False), test["acc"])
    best_row = state.history[state.best_epoch - 1]
    last_row = state.history[-1]
    metrics = {
        "train_acc": best_row["train_acc"], "val_acc": best_row["val_acc"], "test_acc": test["acc"],
        "train_loss": best_row["train_loss"], "val_loss": best_row["val_loss"], "test_loss": test["loss"],
        "test_nll": test["loss"], "test_ece": test["ece"],
        "epochs": state.epochs_done, "best_epoch": state.best_epoch, "seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(state.history), 1), "feature_seconds": feature_seconds,
        **model.parameter_counts(),
        "nfe_forward": last_row["nfe_forward"], "nfe_backward": last_row["nfe_backward"],
        "nfe_eval": test["nfe"], "images_per_s": last_row["images_per_s"],
        "peak_memory_mb": peak_memory_mb(device), "memory_kind": "cuda_max_allocated" if device.type == "cuda"
        else "process_max_rss", "fallbacks": state.fallbacks, "stopped_early": state.stopped_early,
        "stop_reason": stop_reason(state, config), "selected": "best validation accuracy", **swap,
    }
    if dist.is_main:
        rundir.write_json(metrics, run_dir / rundir.METRICS)
    if dist.active:
        torch_dist.barrier()
    return run_dir

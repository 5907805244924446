"""One experiment, end to end: validate, build data and model, train, test, and write a run directory.

Parameters and paths are checked before the run directory is created; a run that fails or is killed before
its first checkpoint leaves a directory that a corrected rerun may reuse, and never touches an earlier run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from . import rundir
from .backbones import create_backbone
from .config import ExperimentConfig
from .data import DataSplits, build_datasets
from .errors import BackboneError, ConfigError, DataError, Interrupted, RunDirError, TrainingError
from .model import TransferModel, head_from_config, load_initial_weights
from .training import DistInfo, Trainer, extract_features, peak_memory_mb, seed_everything, stop_reason, write_history

RUNS_ROOT = Path("runs")
MIN_FEATURE_BATCH = 128  # feature extraction batch floor: changing it changes cached values in the last bits


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        index = int(os.environ.get("LOCAL_RANK", 0)) if dist.active else 0
        torch.cuda.set_device(index)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): gloo on the CPU, nccl on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not torch_dist.is_initialized():
        use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(torch_dist.get_rank(), torch_dist.get_world_size())


def library_versions() -> dict[str, str]:
    import timm
    import torchdiffeq
    import torchvision

    from . import __version__

    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "torchdiffeq": getattr(torchdiffeq, "__version__", "unknown"),
            "node_transfer": __version__, "platform": platform.platform()}


def new_run_dir(config: ExperimentConfig, root: Path = RUNS_ROOT) -> Path:
    """A fresh directory name under `root`; never an existing one."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    label = config.head if config.head == "fc" else f"node-{config.solver}{'-adjoint' if config.adjoint else ''}"
    base = root / f"{stamp}-{config.dataset}-{label}-s{config.seed}"
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


@contextlib.contextmanager
def main_rank_first(dist: DistInfo) -> Iterator[None]:
    """Rank 0 runs the block first (downloads data and weights), then the other ranks (reading what it fetched)."""
    if dist.active and not dist.is_main:
        torch_dist.barrier()
    yield
    if dist.active and dist.is_main:
        torch_dist.barrier()


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
    """Validate parameters and build data and model; raises before anything is written."""
    config.validate(check_paths=check_paths)
    dist = init_distributed(config.device)
    device = resolve_device(config.device, dist)
    seed_everything(config.seed)
    with main_rank_first(dist):
        backbone, data_config = create_backbone(config.backbone, config.weights)
        splits = build_datasets(config.dataset, config.data_dir, config.download, config.image_size,
                                config.val_size, config.seed, data_config,
                                augment=config.augment and not config.cache_features, train_subset=config.train_subset)
    num_features = backbone.num_features
    seed_everything(config.seed)  # the head's init must not depend on what loading the backbone consumed
    model = TransferModel(backbone, head_from_config(config, num_features, splits.num_classes))
    init_checkpoint, head_taken = None, []
    if config.init_from:
        init_checkpoint = rundir.load_init_from(Path(config.init_from))
        head_taken = load_initial_weights(model, init_checkpoint, config.init_from)
    if config.freeze_backbone:
        model.backbone.requires_grad_(False)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    resolved = {
        **config.to_dict(), "device_resolved": str(device), "world_size": dist.world_size,
        "num_classes": splits.num_classes, "class_names": splits.class_names,
        "num_features": num_features, "data_config": {k: v for k, v in data_config.items() if k != "crop_mode"},
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "init_from_head_tensors": head_taken, "versions": library_versions(),
        "torch_threads": torch.get_num_threads(),
    }
    return Prepared(config, model, splits, device, dist, resolved, init_checkpoint)


def feature_cache_key(config: ExperimentConfig, pool: bool, device: str = "cpu", batch_size: int = 128) -> str:
    """What determines cached features: backbone and weights, data and split, image size, pooling, device type
    (a GPU's convolutions round differently from the CPU's) and the extraction batch (it moves the last bits)."""
    import hashlib

    weights = config.weights
    if Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    parts = [config.backbone, weights, config.dataset, str(Path(config.data_dir).resolve()), config.image_size,
             config.val_size, config.seed, config.train_subset, pool, config.init_from, torch.__version__, device,
             batch_size]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def cached_feature_sets(prepared: Prepared, progress: bool = True) -> list[torch.utils.data.TensorDataset]:
    """Train/val/test features of the frozen backbone, from `feature_cache` when it holds them."""
    from .checkpoints import atomic_save

    config, model, splits = prepared.config, prepared.model, prepared.splits
    pool = config.head == "fc" or config.node_state == "vector"
    batch_size = max(config.batch_size, MIN_FEATURE_BATCH)
    path = None
    if config.feature_cache and not config.init_from:  # a fine-tuned backbone's features are its own
        folder = Path(config.feature_cache)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{feature_cache_key(config, pool, prepared.device.type, batch_size)}.pt"
        if path.is_file():
            try:
                tensors = torch.load(path, map_location="cpu", weights_only=True)
                return [torch.utils.data.TensorDataset(*tensors[name]) for name in ("train", "val", "test")]
            except Exception as exc:  # a torn or foreign file: computed again and replaced
                warnings.warn(f"feature cache {str(path)!r} is unreadable ({exc.__class__.__name__}); "
                              "computing the features again", stacklevel=2)
    sets = {name: extract_features(model, dataset, batch_size, prepared.device, pool, progress,
                                   desc=f"features ({name})", num_workers=config.num_workers)
            for name, dataset in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    if path is not None and prepared.dist.is_main:
        atomic_save({name: list(data.tensors) for name, data in sets.items()}, path)
    return list(sets.values())


#: What a resumed run may change; every other parameter must equal the saved one.
RESUME_MAY_CHANGE = ("epochs", "target_val_acc", "device", "num_workers", "data_dir", "download", "feature_cache",
                     "on_solver_failure", "fallback_solver", "fallback_step_size", "max_num_steps", "amp", "out",
                     "resume")


def check_resume(config: ExperimentConfig, checkpoint: dict[str, Any], run_dir: Path) -> None:
    """ConfigError unless `config` may continue the run saved in `checkpoint` (same model, data, split, seed)."""
    saved = checkpoint.get("config") or {}
    for name in ExperimentConfig.field_names():
        if name not in RESUME_MAY_CHANGE and name in saved and getattr(config, name) != saved[name]:
            raise ConfigError(name, getattr(config, name), f"{saved[name]!r}, as saved in {str(run_dir)!r}: a resumed "
                              f"run keeps its configuration except {', '.join(RESUME_MAY_CHANGE[:-2])}")
    if config.epochs < checkpoint["epoch"]:
        raise ConfigError("epochs", config.epochs, f"at least {checkpoint['epoch']}, the epochs already done in "
                          f"{str(run_dir)!r}")


def is_finished(run_dir: Path, checkpoint: dict[str, Any], config: ExperimentConfig) -> bool:
    """Whether a run has its metrics and nothing left to train under `config` (epochs, target)."""
    history = checkpoint.get("history") or []
    reached = config.target_val_acc is not None and bool(history) and history[-1]["val_acc"] >= config.target_val_acc
    return (run_dir / rundir.METRICS).is_file() and (checkpoint["epoch"] >= config.epochs or reached)


@contextlib.contextmanager
def signals_as_errors() -> Iterator[None]:
    """SIGTERM raises `Interrupted` (in the main thread), so the run can say what it keeps and clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def claim_run_dir(run_dir: Path, resuming: bool) -> tuple[Any, bool]:
    """Create (or reuse, when restartable) and lock the run directory; returns the lock and whether it was made."""
    created = False
    try:
        if not run_dir.exists():
            run_dir.mkdir(parents=True)
            created = True
    except FileExistsError:
        pass  # another run made it first: the lock decides
    except OSError as exc:
        raise ConfigError("out", str(run_dir), f"a directory that can be created ({exc.strerror})") from None
    handle = rundir.lock(run_dir)
    rundir.remove_temp_files(run_dir)
    if not resuming:
        if not rundir.is_restartable(run_dir):
            rundir.unlock(handle, run_dir)
            raise ConfigError("out", str(run_dir), "a directory that does not exist yet (another run has just "
                              "written to it)")
        rundir.clear_for_restart(run_dir)
    return handle, created


def _kept(run_dir: Path) -> str:
    if (run_dir / rundir.LAST).is_file():
        return (f"the last complete epoch is kept in {run_dir / rundir.LAST}; continue with "
                f"`node-transfer run --out {run_dir} --resume`")
    return f"no epoch was complete; run it again with the same --out ({run_dir} may be reused)"


def run_experiment(config: ExperimentConfig, progress: bool = True) -> Path:
    """Run one experiment and return its run directory (config.json, history.csv, metrics.json, *.pt)."""
    config.validate()
    dist = init_distributed(config.device)
    run_dir = agreed_run_dir(config, dist)
    resume_point = None
    if config.resume and (run_dir / rundir.LAST).is_file():
        resume_point = rundir.load_last(run_dir, repair=dist.is_main)
        check_resume(config, resume_point, run_dir)
        if is_finished(run_dir, resume_point, config):
            print(f"{run_dir} is finished ({resume_point['epoch']} epochs): nothing to do, metrics.json kept; "
                  f"pass a larger epochs (or another target_val_acc) to extend it", file=sys.stderr)
            return run_dir
    handle, created = claim_run_dir(run_dir, resume_point is not None) if dist.is_main else (None, False)
    if dist.active:
        torch_dist.barrier()
    try:
        try:
            with signals_as_errors():
                return _run(config, run_dir, dist, resume_point, progress)
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT, f"interrupted by SIGINT; {_kept(run_dir)}") from None
        except Interrupted as exc:
            raise Interrupted(exc.signum, f"{exc}; {_kept(run_dir)}") from None
        except OSError as exc:
            raise RunDirError(f"cannot write the run directory {run_dir} ({exc.__class__.__name__}: {exc}); "
                              f"{_kept(run_dir)}") from None
    except ConfigError:
        if dist.is_main and created and rundir.is_restartable(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # bad parameters leave nothing behind
        raise
    except (TrainingError, DataError, BackboneError, RunDirError, Interrupted) as exc:
        if dist.is_main:
            rundir.write_error(run_dir, str(exc))
        raise
    finally:
        if handle is not None:
            rundir.remove_temp_files(run_dir)
            rundir.unlock(handle, run_dir)


def _run(config: ExperimentConfig, run_dir: Path, dist: DistInfo, resume_point: dict[str, Any] | None,
         progress: bool) -> Path:
    prepared = prepare(config, check_paths=False)
    model, splits, device = prepared.model, prepared.splits, prepared.device
    if dist.is_main:
        rundir.write_json(prepared.resolved, run_dir / rundir.CONFIG)  # on resume: with the options given now
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
            write_history(trainer.state.history, run_dir / rundir.HISTORY)  # a kill may have left it behind
    state = trainer.fit()
    if state.best_epoch == 0:
        raise TrainingError(f"no epoch had a finite validation loss, so there is no best checkpoint to test; "
                            f"{_kept(run_dir)}")
    train_seconds = sum(row["seconds"] for row in state.history)

    if dist.active:
        torch_dist.barrier()  # rank 0 has written best.pt
    model.load_state_dict(rundir.load_best(run_dir, state.best_epoch)["model"])
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=config.batch_size, shuffle=False)
    test = trainer.evaluate(test_loader, None, "the test set")
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
        "stop_reason": stop_reason(state, config), "selected": "best validation accuracy",
    }
    if dist.is_main:
        rundir.write_json(metrics, run_dir / rundir.METRICS)
    if dist.active:
        torch_dist.barrier()
    return run_dir

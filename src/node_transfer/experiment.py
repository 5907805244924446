"""One experiment, end to end: validate, build data and model, train, test, and write a run directory.

Everything that can fail on bad input (parameters, data, weights, `init_from`) is checked before the run
directory is created, so a failed start leaves nothing behind and never touches an earlier run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from .backbones import create_backbone
from .checkpoints import load_checkpoint
from .config import ExperimentConfig
from .data import DataSplits, build_datasets
from .errors import TrainingError
from .model import TransferModel, head_from_config, load_initial_weights
from .training import DistInfo, Trainer, extract_features, peak_memory_mb, seed_everything, stop_reason

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


def prepare(config: ExperimentConfig) -> Prepared:
    """Validate parameters and build data and model; raises before anything is written."""
    config.validate()
    dist = init_distributed(config.device)
    device = resolve_device(config.device, dist)
    seed_everything(config.seed)
    backbone, data_config = create_backbone(config.backbone, config.weights)
    splits = build_datasets(config.dataset, config.data_dir, config.download, config.image_size, config.val_size,
                            config.seed, data_config, augment=config.augment and not config.cache_features,
                            train_subset=config.train_subset)
    num_features = backbone.num_features
    seed_everything(config.seed)  # the head's init must not depend on what loading the backbone consumed
    model = TransferModel(backbone, head_from_config(config, num_features, splits.num_classes))
    init_checkpoint, head_taken = None, []
    if config.init_from:
        init_checkpoint = load_checkpoint(config.init_from)
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


def feature_cache_key(config: ExperimentConfig, pool: bool, device: str = "cpu") -> str:
    """What determines cached features: backbone and weights, data and split, image size, pooling, device type
    (a GPU's convolutions round differently from the CPU's)."""
    import hashlib

    weights = config.weights
    if Path(weights).is_file():
        stat = Path(weights).stat()
        weights = f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    parts = [config.backbone, weights, config.dataset, str(Path(config.data_dir).resolve()), config.image_size,
             config.val_size, config.seed, config.train_subset, pool, config.init_from, torch.__version__, device]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def cached_feature_sets(prepared: Prepared, progress: bool = True) -> list[torch.utils.data.TensorDataset]:
    """Train/val/test features of the frozen backbone, from `feature_cache` when it holds them."""
    from .checkpoints import atomic_save

    config, model, splits = prepared.config, prepared.model, prepared.splits
    pool = config.head == "fc" or config.node_state == "vector"
    path = None
    if config.feature_cache and not config.init_from:  # a fine-tuned backbone's features are its own
        folder = Path(config.feature_cache)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{feature_cache_key(config, pool, prepared.device.type)}.pt"
        if path.is_file():
            tensors = torch.load(path, map_location="cpu", weights_only=True)
            return [torch.utils.data.TensorDataset(*tensors[name]) for name in ("train", "val", "test")]
    batch_size = max(config.batch_size, MIN_FEATURE_BATCH)
    sets = {name: extract_features(model, dataset, batch_size, prepared.device, pool, progress,
                                   desc=f"features ({name})", num_workers=config.num_workers)
            for name, dataset in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    if path is not None and prepared.dist.is_main:
        atomic_save({name: list(data.tensors) for name, data in sets.items()}, path)
    return list(sets.values())


def run_experiment(config: ExperimentConfig, progress: bool = True) -> Path:
    """Run one experiment and return its run directory (config.json, history.csv, metrics.json, *.pt)."""
    prepared = prepare(config)
    config, model, splits, device, dist = (prepared.config, prepared.model, prepared.splits, prepared.device,
                                           prepared.dist)
    run_dir = Path(config.out) if config.out else new_run_dir(config)
    if dist.is_main and not config.resume:
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "config.json").write_text(json.dumps(prepared.resolved, indent=2, default=str) + "\n")
    if dist.active:
        torch_dist.barrier()

    train_set, val_set, test_set = splits.train, splits.val, splits.test
    start = time.perf_counter()
    feature_seconds = 0.0
    if config.cache_features:
        train_set, val_set, test_set = cached_feature_sets(prepared, progress)
        feature_seconds = time.perf_counter() - start
    trainer = Trainer(model, config, train_set, val_set, device, run_dir, dist, cached=config.cache_features,
                      progress=progress)
    if config.resume:
        trainer.restore(load_checkpoint(run_dir / "last.pt", parameter="resume"))
    try:
        state = trainer.fit()
    except TrainingError as exc:
        if dist.is_main:
            (run_dir / "error.txt").write_text(f"{exc}\n")
        raise
    train_seconds = sum(row["seconds"] for row in state.history)

    if dist.active:
        torch_dist.barrier()  # rank 0 has written best.pt
    model.load_state_dict(load_checkpoint(run_dir / "best.pt", parameter="out")["model"])
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=config.batch_size, shuffle=False)
    test = trainer.evaluate(test_loader)
    best_row = state.history[state.best_epoch - 1]
    last_row = state.history[-1]
    metrics = {
        "train_acc": best_row["train_acc"], "val_acc": best_row["val_acc"], "test_acc": test["acc"],
        "train_loss": best_row["train_loss"], "val_loss": best_row["val_loss"], "test_loss": test["loss"],
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
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if dist.active:
        torch_dist.barrier()
    return run_dir

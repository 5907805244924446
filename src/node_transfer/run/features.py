"""Features of a frozen backbone: extracted once per split, and cached on disk keyed by what determines them."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset, TensorDataset
from tqdm.auto import tqdm

from ..core.checkpoints import atomic_save
from ..core.choices import HEAD_KINDS
from ..core.config import ExperimentConfig
from ..core.speed import LEGACY, uses_channels_last
from ..model.tensor_images import make_loader
from ..model.transfer import TransferModel

if TYPE_CHECKING:  # for annotations only: experiment imports this module
    from .experiment import Prepared

MIN_FEATURE_BATCH = 128  # feature extraction batch floor: changing it changes cached values in the last bits


def extract_features(model: TransferModel, dataset: Dataset, batch_size: int, device: torch.device,
                     pool: bool, progress: bool = True, desc: str = "features", num_workers: int = 0) -> TensorDataset:
    """Run the frozen backbone once over a data set (eval transform) under inference mode; features kept in memory.

    Workers do not change the values; another batch size can, in the last bits (the CPU kernels block the batch)."""
    model.backbone.eval()
    loader = make_loader(dataset, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    features: torch.Tensor | None = None
    labels = torch.empty(len(dataset), dtype=torch.int64)
    start = 0
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc=desc, disable=not (progress and sys.stderr.isatty()), leave=False):
            out = model.features(images.to(device, non_blocking=True)).float()
            out = out.mean(dim=(2, 3)) if pool and out.dim() == 4 else out
            if features is None:
                with torch.inference_mode(False):  # a normal tensor, not an inference one
                    features = torch.empty((len(dataset), *out.shape[1:]), dtype=out.dtype)
            end = start + len(out)
            features[start:end] = out
            labels[start:end] = torch.as_tensor(targets)
            start = end
    if features is None:
        raise ValueError(f"extract_features: the data set is empty ({desc})")
    return TensorDataset(features, labels)


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
    if config.memory_format != LEGACY["memory_format"]:  # the layout moves the last bits; keys of older runs kept
        parts.append(uses_channels_last(config.memory_format, device))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]


def cached_feature_sets(prepared: Prepared, progress: bool = True) -> list[torch.utils.data.TensorDataset]:
    """Train/val/test features of the frozen backbone, from `feature_cache` when it holds them."""
    config, model, splits = prepared.config, prepared.model, prepared.splits
    pool = not (HEAD_KINDS[config.head].takes_maps and config.node_state == "map")
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

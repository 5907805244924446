"""Workloads: the backbone, real digits batches, cached features, a Trainer on a fresh head, a plain training step,
and the roofline (FLOPs of a call, the matmul ceiling of this machine)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .setup import CACHE
from .timing import log


def autocast(device: torch.device):
    """bf16 autocast on CUDA (the heads of TransferModel turn it off for themselves), nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bare_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
              device: torch.device) -> torch.Tensor:
    """One plain training step (forward under autocast, cross-entropy, backward, update): the reference."""
    with autocast(device):
        logits = model(images)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def load_backbone(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict]:
    """The backbone (package's create_backbone) on the device, channels_last on CUDA."""
    from node_transfer.model.backbones import create_backbone

    backbone, data_config = create_backbone(args.backbone, args.weights)
    backbone.to(device)
    if device.type == "cuda":
        backbone.to(memory_format=torch.channels_last)
    return backbone, data_config


def maybe_compile(backbone: nn.Module, enabled: bool) -> nn.Module:
    """Compile forward_features in place (what TransferModel calls); call after any deepcopy."""
    if enabled:
        backbone.forward_features = torch.compile(backbone.forward_features)
    return backbone


def fresh_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)


def digits(data_config: dict, image_size: int, augment: bool, seed: int = 0):
    """The package's digits splits (offline): train 1293 / val 144 / test 360 images."""
    from node_transfer.model.data import build_datasets

    return build_datasets("digits", "data", False, image_size, None, seed, data_config, augment=augment)


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def fixed_batches(dataset: Dataset, batch_size: int, count: int, device: torch.device,
                  seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` shuffled batches of real images (transforms applied once), held on the device."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    batches = []
    for images, labels in loader:
        batches.append((to_device(images, device), labels.to(device)))
        if len(batches) == count:
            break
    return batches


def cached_features(args: argparse.Namespace, device: torch.device) -> dict[str, TensorDataset]:
    """Pooled backbone features of the digits splits (eval transform), computed once and kept on disk.

    The package does the work: `experiment.prepare` builds the frozen backbone and the splits of an
    ExperimentConfig with `cache_features=True`, and `features.cached_feature_sets` extracts them or loads
    them from `feature_cache` (bench/_cache/features, keyed by backbone, weights, data, split, image size,
    pooling, torch version and device type), so the scripts share one extraction.
    """
    from node_transfer.core.config import ExperimentConfig
    from node_transfer.core.speed import settle
    from node_transfer.run.experiment import prepare
    from node_transfer.run.features import MIN_FEATURE_BATCH, cached_feature_sets, feature_cache_key

    config = ExperimentConfig.from_dict({
        "dataset": "digits", "backbone": args.backbone, "weights": args.weights, "image_size": args.image_size,
        "batch_size": args.batch_size, "freeze_backbone": True, "cache_features": True, "seed": 0,
        "feature_cache": str(CACHE / "features"), "device": device.type})
    key = feature_cache_key(settle(config, None), pool=True, device=device.type,  # `auto` as a new run settles it
                            batch_size=max(args.batch_size, MIN_FEATURE_BATCH))
    cached = (CACHE / "features" / f"{key}.pt").is_file()
    if not cached:
        log(f"extracting features ({args.backbone}, {args.image_size} px) into bench/_cache/features")
    sets = cached_feature_sets(prepare(config), progress=False)
    return dict(zip(("train", "val", "test"), sets))


def head_config(**changes: Any):
    """An ExperimentConfig for head-only training on cached features (the package's defaults otherwise)."""
    from node_transfer.core.config import ExperimentConfig

    values = {"freeze_backbone": True, "cache_features": True, **changes}
    return ExperimentConfig.from_dict(values)


def cached_trainer(config, num_features: int, num_classes: int, train_set: Dataset, val_set: Dataset,
                   device: torch.device, run_dir: Path):
    """The package's Trainer in cached mode on a fresh head (the backbone is not needed: features are given); in
    cached mode the Trainer keeps bf16 autocast off by itself, so the ODE solve stays float32."""
    from node_transfer.model.transfer import TransferModel, head_from_config
    from node_transfer.run.resume import seed_everything
    from node_transfer.run.training import Trainer

    seed_everything(config.seed)
    head = head_from_config(config, num_features, num_classes)
    model = TransferModel(nn.Identity(), head).to(device)
    return Trainer(model, config, train_set, val_set, device, run_dir, cached=True, progress=False)


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call, as torch's FlopCounterMode counts them (convolutions and matrix
    products, depthwise ones included; elementwise work, normalisation and pooling are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_gflops(size: int = 2048, reps: int = 5) -> float:
    """The compute ceiling measured on this machine and thread count: GFLOP/s of a float32 matrix product
    (size x size, the best of `reps`: other work on a shared machine only slows it), the fastest kernel the CPU
    has; a network's convolutions reach less."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    return 2 * size**3 / min(seconds) / 1e9

"""Helpers shared by the benchmark scripts in bench/.

This is a package folder, not a `bench/*.py` file, so `make bench` (which runs every `bench/*.py`) never runs
it. A script run as `python bench/NAME.py` has `bench/` on `sys.path`, so it imports `_lib` directly.

Timing rules every script follows: `time.perf_counter`, a device synchronisation around each timed call on
CUDA, warm-up calls excluded, configurations measured alternately (A B A B ..., the order reversed every other
round so that a slow drift of the machine hits every configuration alike), the median of the repetitions, and
ratios taken between numbers of the same run. `torch.set_num_threads` is left at its default unless
--threads is given.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "bench"
CACHE = ROOT / "bench" / "_cache"  # features shared between scripts; git-ignored (bench/.gitignore)
START = time.perf_counter()
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------------------- command line and device
def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --device, --quick, --compile, --backbone, --image-size, --batch-size."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: bf16 autocast for the backbone, channels_last, data kept on the GPU")
    p.add_argument("--quick", action="store_true", help="a smoke test: fewer repetitions and configurations")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone's forward_features")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    p.add_argument("--weights", default="imagenet", help="imagenet, none, or a weights file")
    p.add_argument("--image-size", type=int, default=64, help="input side in pixels")
    p.add_argument("--batch-size", type=int, default=64, help="batch size")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core); 1 is steadier on a busy machine")
    return p


def resolve_device(name: str, threads: int = 0) -> torch.device:
    """The torch device for --device; --device cuda without a visible GPU stops with a clear message."""
    if threads:
        torch.set_num_threads(threads)
    if name == "cuda":
        if not torch.cuda.is_available():
            build = torch.version.cuda or "none (a CPU-only build)"
            sys.exit(f"error: --device cuda, but no CUDA device is visible here (torch {torch.__version__}, "
                     f"CUDA build: {build}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
                     "Run this script on a GPU machine, or use --device cpu.")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return torch.device("cuda", 0)
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def machine(device: torch.device) -> dict[str, Any]:
    from node_transfer.experiment import cpu_description  # the CPU model and the kernels torch dispatches to

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            **cpu_description(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["load_average_at_start"] = LOAD_AT_START  # 1, 5 and 15 minute averages: other work on the machine
    with contextlib.suppress(OSError):
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# ---------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of one call, synchronised on CUDA."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def interleaved(tasks: dict[str, Callable[[], Any]], reps: int, warmup: int, device: torch.device,
                on_result: Callable[[str, Any], None] | None = None, verbose: bool = True) -> dict[str, list[float]]:
    """Run every task `warmup` times (not recorded), then `reps` rounds of one call each, alternating.

    Round r runs the tasks in their given order when r is even and in reverse when it is odd (A B C, C B A,
    A B C ...). Returns each task's list of seconds; `on_result(name, result)` sees each timed call's result.
    """
    names = list(tasks)
    for _ in range(warmup):
        for name in names:
            tasks[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            elapsed, result = timed(tasks[name], device)
            seconds[name].append(elapsed)
            if on_result is not None:
                on_result(name, result)
        if verbose:
            log(f"  round {r + 1}/{reps}: " + ", ".join(f"{n}={seconds[n][-1]:.3g}s" for n in names))
    return seconds


def cpu_timed(fn: Callable[[], Any], record: list[float]) -> Callable[[], Any]:
    """`fn`, also recording the process CPU seconds of each call into `record`: with one thread, less sensitive
    than wall time to other work on a shared machine (time spent waiting for a core is not counted)."""
    def run() -> Any:
        start = time.process_time()
        result = fn()
        record.append(time.process_time() - start)
        return result

    return run


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> float:
    """(max - min) / median of the repetitions: how noisy a measurement was."""
    if not values:
        return float("nan")
    return (max(values) - min(values)) / statistics.median(values)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


# ---------------------------------------------------------------------------- models and data
def load_backbone(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, dict]:
    """The backbone (package's create_backbone) on the device, channels_last on CUDA."""
    from node_transfer.backbones import create_backbone

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
    from node_transfer.data import build_datasets

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
    from node_transfer.config import ExperimentConfig
    from node_transfer.experiment import prepare
    from node_transfer.features import MIN_FEATURE_BATCH, cached_feature_sets, feature_cache_key
    from node_transfer.speed import settle

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
    from node_transfer.config import ExperimentConfig

    values = {"freeze_backbone": True, "cache_features": True, **changes}
    return ExperimentConfig.from_dict(values)


def cached_trainer(config, num_features: int, num_classes: int, train_set: Dataset, val_set: Dataset,
                   device: torch.device, run_dir: Path):
    """The package's Trainer in cached mode on a fresh head (the backbone is not needed: features are given).

    On CUDA the config's bf16 autocast is turned off here: in cached mode the Trainer calls the head directly,
    so autocast would reach the ODE solve (see the note in book/performance.md).
    """
    from node_transfer.model import TransferModel, head_from_config
    from node_transfer.training import Trainer, seed_everything

    seed_everything(config.seed)
    head = head_from_config(config, num_features, num_classes)
    model = TransferModel(nn.Identity(), head).to(device)
    if device.type == "cuda":
        config = config.replace(amp=False)
    return Trainer(model, config, train_set, val_set, device, run_dir, cached=True, progress=False)


# ---------------------------------------------------------------------------- the roofline
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


# ---------------------------------------------------------------------------- output
def rounded(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Floats to `digits` significant digits, for a readable CSV."""
    import pandas as pd

    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].map(lambda v: float(f"{v:.{digits}g}") if pd.notna(v) else v)
    return out


def save(name: str, table: pd.DataFrame, summary: dict[str, Any], device: torch.device,
         args: argparse.Namespace, extra_tables: dict[str, pd.DataFrame] | None = None) -> None:
    """Print the table(s) as Markdown; write results/bench/NAME.csv (+ NAME-PART.csv) and NAME.json.

    With --quick they go to bench/_cache/quick/ instead, so a smoke test never replaces committed results.
    """
    out = CACHE / "quick" if args.quick else RESULTS  # smoke tests never overwrite the committed results
    out.mkdir(parents=True, exist_ok=True)
    table = rounded(table)
    table.to_csv(out / f"{name}.csv", index=False)
    print(f"\n## {name}  ({describe_device(device)})\n")
    print(table.to_markdown(index=False))
    for part, extra in (extra_tables or {}).items():
        extra = rounded(extra)
        extra.to_csv(out / f"{name}-{part}.csv", index=False)
        print(f"\n### {name}: {part}\n")
        print(extra.to_markdown(index=False))
    summary = {"benchmark": name, **summary, "quick": bool(args.quick),
               "arguments": {k: v for k, v in vars(args).items() if not k.startswith("_")},
               "seconds": round(time.perf_counter() - START, 1),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(device)}
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    verdict = "PASS" if summary.get("pass") else "FAIL"
    print(f"\n{name}: {summary.get('headline')} = {summary.get('value')} (target {summary.get('target')}): "
          f"{verdict}; {summary['seconds']} s")


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield

"""Caching frozen-backbone features at scale: the package's path against a bare timm loop, and the reload.

Fashion-MNIST at 32 px on EfficientNet-Lite0 (offline ImageNet weights), all 70,000 images by default
(train 55,000 + val 5,000 + test 10,000; `--images N` for a proportional subset). Three measurements:

- bare: the same preprocessed images (the package's data sets, eval transform) through a plain DataLoader and
  timm's `forward_features` + mean pooling under `torch.inference_mode()`, features kept in memory;
- cached_feature_sets: the package's `features.cached_feature_sets`, extracting and writing the cache file
  (fsync included) into an empty `feature_cache` folder;
- reload: `cached_feature_sets` again, which loads that file.

Both extraction paths use the same batches (`features.MIN_FEATURE_BATCH`, split by split: the CPU kernels
results can change in the last bits with the batch layout) and run alternately (A B, B A ..).
The headline is the package's throughput over the bare loop's in wall time (target >= 0.9; process CPU time
is reported too, being steadier on a shared machine); the two must give the same features, bit for bit. On a
busy machine use --threads 1: with 2 threads on 2 shared cores (load average 4) Lite0 ran 4x slower than
with one.

    .venv/bin/python bench/feature_cache.py [--images N] [--reps R] [--threads 1] [--quick]
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import _lib
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, DataLoader, Subset

from node_transfer.config import ExperimentConfig
from node_transfer.experiment import prepare
from node_transfer.features import MIN_FEATURE_BATCH, cached_feature_sets

TARGET = 0.9  # the package's extraction + write at >= 0.9x the bare loop's images per second
SPLITS = ("train", "val", "test")


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.set_defaults(image_size=32, batch_size=MIN_FEATURE_BATCH)
    p.add_argument("--images", type=int, default=0, help="images in all (0: all 70,000), split 55:5:10")
    p.add_argument("--reps", type=int, default=1, help="timed passes per extraction path, alternating")
    p.add_argument("--reload-reps", type=int, default=3, help="timed reloads of the cache file")
    p.add_argument("--data-dir", default=str(_lib.CACHE / "data"), help="receives the decompressed Fashion-MNIST")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers, both paths")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps, args.reload_reps = args.images or 1400, 1, 1
    device = _lib.resolve_device(args.device, args.threads)
    config = ExperimentConfig.from_dict({
        "dataset": "fashion-mnist", "data_dir": args.data_dir, "backbone": args.backbone, "weights": args.weights,
        "image_size": args.image_size, "batch_size": args.batch_size, "freeze_backbone": True,
        "cache_features": True, "head": "fc", "device": device.type, "num_workers": args.num_workers})
    prepared = prepare(config)
    splits = prepared.splits
    if args.images:  # a proportional subset of each split, the same for both paths
        total = sum(len(getattr(splits, name)) for name in SPLITS)
        subsets = {name: Subset(getattr(splits, name), range(round(len(getattr(splits, name)) * args.images / total)))
                   for name in SPLITS}
        prepared = dataclasses.replace(prepared, splits=dataclasses.replace(splits, **subsets))
        splits = prepared.splits
    images = ConcatDataset([getattr(splits, name) for name in SPLITS])
    backbone = prepared.model.backbone  # the timm model itself, frozen
    batch_size = max(config.batch_size, MIN_FEATURE_BATCH)
    _lib.log(f"{len(images)} images ({', '.join(f'{n} {len(getattr(splits, n))}' for n in SPLITS)}), "
             f"{args.image_size} px, batch {batch_size}, {args.backbone}, {_lib.describe_device(device)}")

    def bare() -> torch.Tensor:
        backbone.eval()
        out = []
        with torch.inference_mode():
            for name in SPLITS:  # split by split, as the package: the same batches, so the same values
                loader = DataLoader(getattr(splits, name), batch_size=batch_size, shuffle=False,
                                    num_workers=args.num_workers)
                for batch, _ in loader:
                    out.append(backbone.forward_features(batch.to(device)).float().mean(dim=(2, 3)).cpu())
        return torch.cat(out)

    _lib.CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="feature_cache-", dir=_lib.CACHE))
    cache_dir = work / "features"

    def package() -> torch.Tensor:
        shutil.rmtree(cache_dir, ignore_errors=True)  # an empty cache: extract and write
        prepared.config.feature_cache = str(cache_dir)
        return torch.cat([s.tensors[0] for s in cached_feature_sets(prepared, progress=False)])

    def reload() -> torch.Tensor:
        return torch.cat([s.tensors[0] for s in cached_feature_sets(prepared, progress=False)])

    try:
        _lib.log("warm-up: two batches through the backbone")
        with torch.inference_mode():
            for batch, _ in DataLoader(Subset(images, range(2 * batch_size)), batch_size=batch_size):
                backbone.forward_features(batch.to(device))
        results: dict[str, torch.Tensor] = {}
        cpu: dict[str, list[float]] = {"bare": [], "cached_feature_sets": []}
        seconds = _lib.interleaved({name: cpu_timed(fn, cpu[name]) for name, fn in
                                    (("bare", bare), ("cached_feature_sets", package))},
                                   reps=args.reps, warmup=0, device=device, on_result=results.__setitem__)
        file = next(cache_dir.glob("*.pt"))
        reload_seconds = _lib.interleaved({"reload": reload}, reps=args.reload_reps, warmup=0, device=device,
                                          on_result=results.__setitem__)["reload"]
        cache_mb = file.stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)

    same = torch.equal(results["bare"], results["cached_feature_sets"])
    max_diff = float((results["bare"] - results["cached_feature_sets"]).abs().max())
    reloaded = torch.equal(results["reload"], results["cached_feature_sets"])
    t_bare, t_package, t_reload = (_lib.median(v) for v in (seconds["bare"], seconds["cached_feature_sets"],
                                                           reload_seconds))
    c_bare, c_package = _lib.median(cpu["bare"]), _lib.median(cpu["cached_feature_sets"])
    n = len(images)
    table = pd.DataFrame([
        {"path": "bare timm loop (inference_mode)", "images": n, "seconds": t_bare, "images_per_s": n / t_bare,
         "relative_throughput": 1.0, "cpu_seconds": c_bare, "relative_cpu_throughput": 1.0,
         "spread": _lib.spread(seconds["bare"])},
        {"path": "cached_feature_sets (extract + write)", "images": n, "seconds": t_package,
         "images_per_s": n / t_package, "relative_throughput": t_bare / t_package, "cpu_seconds": c_package,
         "relative_cpu_throughput": c_bare / c_package, "spread": _lib.spread(seconds["cached_feature_sets"])},
        {"path": "cached_feature_sets (reload)", "images": n, "seconds": t_reload, "images_per_s": n / t_reload,
         "relative_throughput": t_bare / t_reload, "cpu_seconds": float("nan"), "relative_cpu_throughput": float("nan"),
         "spread": _lib.spread(reload_seconds)},
    ])
    ratio = t_bare / t_package
    summary = {
        "headline": "throughput of cached_feature_sets (extract + write) over a bare timm inference_mode loop",
        "value": round(ratio, 3), "target": f">= {TARGET:g}", "pass": bool(ratio >= TARGET and same and reloaded),
        "reload_seconds": round(t_reload, 3), "cache_file_mb": round(cache_mb, 1),
        "bare_seconds": round(t_bare, 2), "package_seconds": round(t_package, 2),
        # process CPU time: less sensitive than wall time to other work on a shared machine
        "cpu_time_ratio": round(c_bare / c_package, 3),
        "features_identical_to_bare": same, "max_abs_difference_to_bare": max_diff, "reload_identical": reloaded,
        "setting": {"dataset": "fashion-mnist", "images": n, "sizes": {s: len(getattr(splits, s)) for s in SPLITS},
                    "image_size": args.image_size, "batch_size": batch_size, "backbone": args.backbone,
                    "num_workers": args.num_workers, "reps": args.reps, "reload_reps": args.reload_reps},
    }
    _lib.save("feature_cache", table, summary, device, args)


def cpu_timed(fn, record: list[float]):
    """`fn`, also recording the process CPU seconds of each call into `record`."""
    def run():
        start = time.process_time()
        result = fn()
        record.append(time.process_time() - start)
        return result

    return run


if __name__ == "__main__":
    main()

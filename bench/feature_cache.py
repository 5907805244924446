"""Caching frozen-backbone features at scale: the package's path as runs were and as they are now, against a bare
timm loop in the fastest memory format, and the reload.

Fashion-MNIST at 32 px on EfficientNet-Lite0 (offline ImageNet weights), all 70,000 images by default
(train 55,000 + val 5,000 + test 10,000; `--images N` for a proportional subset), one thread unless --threads
says otherwise. Three extraction paths, alternating (A B C, C B A ..), each timed from its configuration:

- package (old): `experiment.prepare` and `features.cached_feature_sets` (extraction and writing the cache file,
  fsync included, into an empty `feature_cache` folder) for a configuration saved before the speed settings
  existed, read as such: NCHW backbone, PIL transforms per image (what every run did until now);
- package (fast): the same for a new run's settings (channels_last, the tensor data path: every image decoded and
  resized once, batches normalised as tensors);
- bare: timm's `forward_features` + mean pooling under `torch.inference_mode()` in channels_last, over the same
  images already decoded and normalised in memory (the fast path's), features kept in memory: the limit.

Then `cached_feature_sets` once more, which loads the file (reload). All paths use the same batches
(`features.MIN_FEATURE_BATCH`, split by split: the CPU kernels' results can change in the last bits with the
batch layout). The headline is the fast path's throughput over the old one's in wall time (target >= 3); the fast
path must also reach >= 0.9x the bare loop and give its features bit for bit. Process CPU time is reported too,
being steadier on a shared machine.

    .venv/bin/python bench/feature_cache.py [--images N] [--reps R] [--threads 1] [--quick]
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import _lib
import pandas as pd
import torch
from torch.utils.data import Subset

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.speed import LEGACY
from node_transfer.model.tensor_images import ImageTensors, normalize
from node_transfer.run.experiment import Prepared, prepare
from node_transfer.run.features import MIN_FEATURE_BATCH, cached_feature_sets

TARGET_VS_OLD = 3.0  # the package's extraction + write, new settings over old, images per second
TARGET_VS_BARE = 0.9  # and over the bare channels_last loop
SPLITS = ("train", "val", "test")


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.set_defaults(image_size=32, batch_size=MIN_FEATURE_BATCH, threads=1)
    p.add_argument("--images", type=int, default=0, help="images in all (0: all 70,000), split 55:5:10")
    p.add_argument("--reps", type=int, default=1, help="timed passes per extraction path, alternating")
    p.add_argument("--reload-reps", type=int, default=3, help="timed reloads of the cache file")
    p.add_argument("--data-dir", default=str(_lib.CACHE / "data"), help="receives the decompressed Fashion-MNIST")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps, args.reload_reps = args.images or 1400, 1, 1
    device = _lib.resolve_device(args.device, args.threads)
    base = {"dataset": "fashion-mnist", "data_dir": args.data_dir, "backbone": args.backbone, "weights": args.weights,
            "image_size": args.image_size, "batch_size": args.batch_size, "freeze_backbone": True,
            "cache_features": True, "head": "fc", "device": device.type}
    configs = {"old": ExperimentConfig.from_saved(base), "fast": ExperimentConfig.from_dict(base)}
    _lib.CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="feature_cache-", dir=_lib.CACHE))
    state: dict[str, Prepared] = {}

    def package(name: str):
        def run() -> torch.Tensor:
            folder = work / name
            shutil.rmtree(folder, ignore_errors=True)  # an empty cache: extract and write
            prepared = subset(prepare(configs[name].replace(feature_cache=str(folder))), args.images)
            state[name] = prepared
            return torch.cat([s.tensors[0] for s in cached_feature_sets(prepared, progress=False)])
        return run

    fast = subset(prepare(configs["fast"]), args.images)  # the bare loop's images, decoded and normalised once
    backbone = fast.model.backbone.eval()  # the timm model itself, frozen, in channels_last (eval: the warm-up
    # below must not move its batch-norm statistics)
    batch_size = max(args.batch_size, MIN_FEATURE_BATCH)
    inputs = {name: normalize(split.images, split.transform.mean, split.transform.std)
              for name in SPLITS for split in [getattr(fast.splits, name)]}
    total = sum(len(x) for x in inputs.values())
    _lib.log(f"{total} images ({', '.join(f'{n} {len(inputs[n])}' for n in SPLITS)}), {args.image_size} px, batch "
             f"{batch_size}, {args.backbone}, {_lib.describe_device(device)}")

    def bare() -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for name in SPLITS:  # split by split, as the package: the same batches, so the same values
                for start in range(0, len(inputs[name]), batch_size):
                    batch = inputs[name][start:start + batch_size].contiguous(memory_format=torch.channels_last)
                    out.append(backbone.forward_features(batch.to(device)).float().mean(dim=(2, 3)).cpu())
        return torch.cat(out)

    try:
        _lib.log("warm-up: two batches through the backbone")
        with torch.inference_mode():
            backbone.forward_features(inputs["train"][:2 * batch_size].contiguous(memory_format=torch.channels_last))
        results: dict[str, torch.Tensor] = {}
        arms = {"package (old)": package("old"), "package (fast)": package("fast"), "bare channels_last": bare}
        cpu: dict[str, list[float]] = {name: [] for name in arms}
        seconds = _lib.interleaved({name: _lib.cpu_timed(fn, cpu[name]) for name, fn in arms.items()},
                                   reps=args.reps, warmup=0, device=device, on_result=results.__setitem__)
        file = next((work / "fast").glob("*.pt"))
        reload_seconds = _lib.interleaved(
            {"reload": lambda: torch.cat([s.tensors[0] for s in cached_feature_sets(state["fast"], progress=False)])},
            reps=args.reload_reps, warmup=0, device=device, on_result=results.__setitem__)["reload"]
        cache_mb = file.stat().st_size / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)

    same = torch.equal(results["bare channels_last"], results["package (fast)"])
    reloaded = torch.equal(results["reload"], results["package (fast)"])
    old_difference = float((results["package (old)"] - results["package (fast)"]).abs().max())
    t = {name: _lib.median(values) for name, values in seconds.items()}
    c = {name: _lib.median(values) for name, values in cpu.items()}
    t_reload = _lib.median(reload_seconds)
    rows = [{"path": name, "images": total, "seconds": t[name], "images_per_s": total / t[name],
             "throughput_vs_old": t["package (old)"] / t[name], "cpu_seconds": c[name],
             "cpu_throughput_vs_old": c["package (old)"] / c[name], "spread": _lib.spread(seconds[name])}
            for name in arms]
    rows.append({"path": "package (fast): reload", "images": total, "seconds": t_reload,
                 "images_per_s": total / t_reload, "throughput_vs_old": t["package (old)"] / t_reload,
                 "cpu_seconds": float("nan"), "cpu_throughput_vs_old": float("nan"),
                 "spread": _lib.spread(reload_seconds)})
    vs_old, vs_bare = t["package (old)"] / t["package (fast)"], t["bare channels_last"] / t["package (fast)"]
    summary = {
        "headline": "feature extraction (+ write) of the package, new settings over old, images/s",
        "value": round(vs_old, 3), "target": f">= {TARGET_VS_OLD:g} (and >= {TARGET_VS_BARE:g} of the bare loop)",
        "pass": bool(vs_old >= TARGET_VS_OLD and vs_bare >= TARGET_VS_BARE and same and reloaded),
        "fast_vs_bare": round(vs_bare, 3), "old_vs_bare": round(t["bare channels_last"] / t["package (old)"], 3),
        "cpu_time_ratio_vs_old": round(c["package (old)"] / c["package (fast)"], 3),
        "cpu_time_ratio_vs_bare": round(c["bare channels_last"] / c["package (fast)"], 3),
        "reload_seconds": round(t_reload, 3), "cache_file_mb": round(cache_mb, 1),
        "features_identical_to_bare": same, "reload_identical": reloaded,
        "max_abs_difference_old_vs_fast": old_difference,
        "settings": {"old": LEGACY, "fast": {"memory_format": state["fast"].config.memory_format,
                                             "data_path": state["fast"].config.data_path}},
        "setting": {"dataset": "fashion-mnist", "images": total, "sizes": {s: len(inputs[s]) for s in SPLITS},
                    "image_size": args.image_size, "batch_size": batch_size, "backbone": args.backbone,
                    "reps": args.reps, "reload_reps": args.reload_reps, "threads": torch.get_num_threads()},
    }
    _lib.save("feature_cache", pd.DataFrame(rows), summary, device, args)


def subset(prepared: Prepared, images: int) -> Prepared:
    """`prepared` with a proportional part of each split (all of them when `images` is 0), the same for every path."""
    if not images:
        return prepared
    splits = prepared.splits
    total = sum(len(getattr(splits, name)) for name in SPLITS)
    parts = {}
    for name in SPLITS:
        split, count = getattr(splits, name), round(len(getattr(splits, name)) * images / total)
        parts[name] = split.subset(range(count)) if isinstance(split, ImageTensors) else Subset(split, range(count))
    return dataclasses.replace(prepared, splits=dataclasses.replace(splits, **parts))


if __name__ == "__main__":
    main()

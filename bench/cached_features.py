"""Head-only training on cached features: head throughput, and the speedup over re-running the backbone.

With a frozen backbone, the package can compute the pooled features once (`cache_features=True`) and train
the head on them. This script times one training epoch of the package's Trainer both ways, for the same head
on the same images (the digits training split with the evaluation transform, which is what the cache holds):

By default an epoch is the first 640 training images (`--images 0`: all 1293); per-epoch times scale with
the number of images, the speedup does not.

- backbone every epoch: Trainer on images, frozen backbone (no gradients), head trained;
- cached: Trainer in cached mode on the features of those images.

Epochs of every (head, mode) pair alternate within each round. It also times the one-off extraction (the
price of the cache) and reports after how many epochs it has paid for itself, how short a cached epoch
would have to be for the 50x target, and an estimate (not a measurement) of the speedup at 224 px: the
backbone's share of an epoch scaled by the pixel count, the head's unchanged.

    .venv/bin/python bench/cached_features.py [--device cpu|cuda] [--quick] [--compile]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _lib
import pandas as pd
from torch import nn
from torch.utils.data import Subset

from node_transfer.model.transfer import TransferModel, head_from_config
from node_transfer.pages.bench_results import DEFAULT_HEAD, NARROW_HEAD
from node_transfer.run.features import extract_features
from node_transfer.run.resume import seed_everything
from node_transfer.run.training import Trainer

TARGET = 50.0  # cached epochs at least 50x faster than epochs that re-run the frozen backbone
HEADS = [("fc", {"head": "fc"}), (DEFAULT_HEAD, {"head": "node"}),
         (NARROW_HEAD, {"head": "node", "ode_width": 64})]
HEADLINE_HEAD = DEFAULT_HEAD


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=640, help="training images per epoch (0 = all 1293)")
    p.add_argument("--reps", type=int, default=3, help="timed epochs per (head, mode), alternating")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per (head, mode) first")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps, args.warmup = 128, 1, int(args.compile)  # compiling belongs to warm-up
    device = _lib.resolve_device(args.device, args.threads)
    backbone, data_config = _lib.load_backbone(args, device)
    backbone = _lib.maybe_compile(backbone, args.compile)
    backbone.requires_grad_(False)
    splits = _lib.digits(data_config, args.image_size, augment=False)
    images = Subset(splits.train, range(args.images)) if args.images else splits.train
    probe = TransferModel(backbone, nn.Identity())
    _lib.log(f"extracting the cache once ({len(images)} training images)")
    with _lib.autocast(device):
        extract_seconds, cache = _lib.timed(
            lambda: extract_features(probe, images, 128, device, pool=True, progress=False), device)
    features = cache  # on the CPU, as the package keeps cached features
    num_classes = splits.num_classes

    tasks, sizes = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, changes in HEADS:
            config = _lib.head_config(batch_size=args.batch_size, seed=0, **changes)
            # backbone every epoch: the whole model, frozen backbone, images through the loader
            seed_everything(0)
            model = TransferModel(backbone, head_from_config(config, backbone.num_features, num_classes)).to(device)
            full = Trainer(model, config.replace(cache_features=False), images, images, device, Path(tmp),
                           progress=False)
            # cached: the same head architecture and initialisation, features instead of images
            cached = _lib.cached_trainer(config, backbone.num_features, num_classes, features, features, device,
                                         Path(tmp))
            tasks[f"{label} | backbone every epoch"] = epoch_task(full)
            tasks[f"{label} | cached"] = epoch_task(cached)
            sizes[label] = len(images)
        _lib.log(f"timing epochs of {len(tasks)} (head, mode) pairs, batch {args.batch_size}, {args.image_size} px")
        seconds = _lib.interleaved(tasks, reps=args.reps, warmup=args.warmup, device=device)

    rows = []
    for label, _ in HEADS:
        full = _lib.median(seconds[f"{label} | backbone every epoch"])
        cached = _lib.median(seconds[f"{label} | cached"])
        rows.append({"head": label, "images": sizes[label], "epoch_s_backbone": full, "epoch_s_cached": cached,
                     "speedup": full / cached, "samples_per_s_backbone": sizes[label] / full,
                     "samples_per_s_cached": sizes[label] / cached,
                     "spread_backbone": _lib.spread(seconds[f"{label} | backbone every epoch"]),
                     "spread_cached": _lib.spread(seconds[f"{label} | cached"]),
                     "extract_s_once": extract_seconds,
                     "break_even_epochs": extract_seconds / max(full - cached, 1e-12),
                     # what 50x needs: a cached epoch at most this long
                     "cached_s_for_target": full / TARGET,
                     # an estimate, not a measurement: the backbone's share scaled by the pixel count
                     "speedup_at_224px_est": ((full - cached) * (224 / args.image_size) ** 2 + cached) / cached})
    table = pd.DataFrame(rows)
    head = table[table["head"] == HEADLINE_HEAD].iloc[0]
    fc = table[table["head"] == "fc"].iloc[0]
    summary = {
        "headline": f"per-epoch speedup of cached-feature training, {HEADLINE_HEAD} head",
        "value": round(float(head["speedup"]), 2), "target": f">= {TARGET:g}",
        "pass": bool(head["speedup"] >= TARGET),
        "speedup_by_head": {r["head"]: round(float(r["speedup"]), 2) for r in rows},
        "pass_by_head": {r["head"]: bool(r["speedup"] >= TARGET) for r in rows},
        "speedup_at_224px_est": {r["head"]: round(float(r["speedup_at_224px_est"]), 1) for r in rows},
        "node_over_fc_samples_per_s_cached": round(float(head["samples_per_s_cached"] / fc["samples_per_s_cached"]),
                                                   4),
        "setting": {"batch_size": args.batch_size, "image_size": args.image_size, "backbone": args.backbone,
                    "images": len(images), "reps": args.reps, "warmup": args.warmup},
    }
    _lib.save("cached_features", table, summary, device, args)


def epoch_task(trainer: Trainer):
    state = {"epoch": 0}

    def run():
        result = trainer.train_epoch(state["epoch"])
        state["epoch"] += 1
        return result

    return run


if __name__ == "__main__":
    main()

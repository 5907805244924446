"""The training loop against the limit: the package's Trainer, as runs were and as they are now, against a bare
timm loop in the fastest memory format, and every loop's images per second against the model's arithmetic.

Fashion-MNIST training images at 32 px (the `fmnist` profile) on EfficientNet-Lite0 with its offline ImageNet
weights, FC head, full fine-tuning, batch 128, Adam (lr 1e-3), one thread unless --threads says otherwise. Three
training loops from the same initial weights, their epochs alternating (A B C, C B A, ...):

- trainer (old): `Trainer.train_epoch` of a configuration saved before the speed settings existed, read as such
  (memory_format channels_last_on_cuda, i.e. NCHW on the CPU, and data_path pil): every run made until now;
- trainer (fast): the same loop with a new run's settings (`auto`: channels_last, the tensor data path);
- bare: `loss = cross_entropy(head(backbone.forward_features(x).mean((2, 3))), y); zero_grad; backward; step`
  over the same images held as normalised channels_last tensors (shuffled per epoch, not augmented), with the
  backbone in channels_last: what a hand-written loop could do at best.

Validation passes (`Trainer.evaluate`, old and fast, over as many validation images) are timed alternately too.
The roofline: FLOPs per image of a forward pass (torch's FlopCounterMode on one batch) and of a training step
(three forwards), and the float32 matrix-product throughput of this machine on the same threads (the compute
ceiling, best of five), so that each loop's images per second reads as GFLOP/s and as a fraction of the ceiling.

Then one bare training step on one batch under other settings, alternating (NCHW; channels_last; and with
denormals flushed to zero, oneDNN switched off, bf16 autocast), to show what the defaults were chosen against.

Targets: trainer (fast) >= 2.3x trainer (old) in images per second, and >= 0.9x the bare loop.

    .venv/bin/python bench/loop_overhead.py [--images N] [--reps R] [--threads 1] [--quick]
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import _lib
import pandas as pd
import torch
import torch.nn.functional as F

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.speed import LEGACY
from node_transfer.model.tensor_images import make_loader, normalize
from node_transfer.run.experiment import prepare
from node_transfer.run.training import Trainer

TARGET_VS_OLD = 2.3  # the fast Trainer's images/s over today's
TARGET_VS_BARE = 0.9  # and over a bare channels_last loop's
# A training step's arithmetic over the forward's: the backward computes the gradients of the inputs and of the
# weights, each about as much as the forward (the convention of the performance chapter's roofline). Counted, not
# assumed, for the forward only: torch's FlopCounterMode overcounts the weight gradients of depthwise convolutions.
STEP_OVER_FORWARD = 3


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.set_defaults(image_size=32, batch_size=128, threads=1)
    p.add_argument("--images", type=int, default=2560, help="training (and validation) images per epoch")
    p.add_argument("--reps", type=int, default=5, help="timed epochs per loop, alternating")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per loop first")
    p.add_argument("--data-dir", default=str(_lib.CACHE / "data"), help="receives the decompressed Fashion-MNIST")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps, args.warmup = 256, 2, 1
    device = _lib.resolve_device(args.device, args.threads)
    base = {"dataset": "fashion-mnist", "data_dir": args.data_dir, "backbone": args.backbone, "weights": args.weights,
            "image_size": args.image_size, "batch_size": args.batch_size, "head": "fc", "optimizer": "adam",
            "lr": 1e-3, "seed": 0, "device": args.device, "train_subset": args.images}
    old = prepare(ExperimentConfig.from_saved(base))  # saved before the settings: read with their legacy values
    fast = prepare(ExperimentConfig.from_dict(base))  # a new run: auto
    assert (old.config.memory_format, old.config.data_path) == tuple(LEGACY.values())
    bare_model = BareModel(copy.deepcopy(fast.model.backbone), copy.deepcopy(fast.model.head.fc))
    images, labels = normalised(fast.splits.train)
    val_images = fast.splits.val.subset(range(min(args.images, len(fast.splits.val))))
    old_val = torch.utils.data.Subset(old.splits.val, range(len(val_images)))
    _lib.log(f"{len(images)} training images, batch {args.batch_size}, {args.image_size} px, {args.backbone}, "
             f"{_lib.describe_device(device)}; old: {old.config.memory_format}/{old.config.data_path}, fast: "
             f"{fast.config.memory_format}/{fast.config.data_path}")

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: Trainer(prepared.model, prepared.config, prepared.splits.train, prepared.splits.val,
                                  device, Path(tmp) / name, progress=False)
                    for name, prepared in (("old", old), ("fast", fast))}
        epochs = {"old": 0, "fast": 0}

        def train(name: str):
            def epoch() -> None:
                trainers[name].train_epoch(epochs[name])
                epochs[name] += 1
            return epoch

        tasks = {"trainer (old)": train("old"), "trainer (fast)": train("fast"),
                 "bare channels_last": bare_loop(bare_model, images, labels, args.batch_size)}
        cpu: dict[str, list[float]] = {name: [] for name in tasks}
        seconds = _lib.interleaved({name: _lib.cpu_timed(fn, cpu[name]) for name, fn in tasks.items()},
                                   reps=args.reps, warmup=args.warmup, device=device)
        loaders = {"old": make_loader(old_val, args.batch_size), "fast": make_loader(val_images, args.batch_size)}
        evaluations = {f"evaluate ({name})": (lambda n=name: trainers[n].evaluate(loaders[n])) for name in loaders}
        cpu |= {name: [] for name in evaluations}
        eval_seconds = _lib.interleaved({name: _lib.cpu_timed(fn, cpu[name]) for name, fn in evaluations.items()},
                                        reps=args.reps, warmup=1, device=device)
    cpu = {name: values[-args.reps:] for name, values in cpu.items()}  # warm-up calls left out

    _lib.log("one training step under other settings, alternating")
    settings = settings_table(bare_model, images[:args.batch_size], labels[:args.batch_size], args.reps, device)
    batch = images[:args.batch_size]
    with torch.no_grad():
        forward_flops = _lib.count_flops(lambda: bare_model.eval()(batch)) / len(batch)
    step_flops = STEP_OVER_FORWARD * forward_flops
    peak = _lib.matmul_gflops()
    rows = []
    for name, values, flops, count in [*((n, v, step_flops, len(images)) for n, v in seconds.items()),
                                       *((n, v, forward_flops, len(val_images)) for n, v in eval_seconds.items())]:
        s = _lib.median(values)
        rows.append({"loop": name, "images": count, "epoch_s": s, "images_per_s": count / s,
                     "images_per_cpu_s": count / _lib.median(cpu[name]), "gflop_per_s": count / s * flops / 1e9,
                     "fraction_of_matmul_peak": count / s * flops / 1e9 / peak, "spread": _lib.spread(values),
                     "epochs_s": " ".join(f"{x:.3f}" for x in values)})
    table = pd.DataFrame(rows)
    rate, cpu_rate = (table.set_index("loop")[column] for column in ("images_per_s", "images_per_cpu_s"))
    vs_old = float(rate["trainer (fast)"] / rate["trainer (old)"])
    vs_bare = float(rate["trainer (fast)"] / rate["bare channels_last"])
    summary = {"headline": "fast Trainer images/s over today's (old settings), full fine-tuning, FC head",
               "value": round(vs_old, 3), "target": f">= {TARGET_VS_OLD} (and >= {TARGET_VS_BARE} of the bare loop)",
               "pass": bool(vs_old >= TARGET_VS_OLD and vs_bare >= TARGET_VS_BARE),
               "fast_vs_bare": round(vs_bare, 3), "old_vs_bare": round(float(rate["trainer (old)"]
                                                                            / rate["bare channels_last"]), 3),
               "evaluate_fast_vs_old": round(float(rate["evaluate (fast)"] / rate["evaluate (old)"]), 3),
               # process CPU time (one thread): less sensitive than wall time to other work on a shared machine
               "cpu_time_fast_vs_old": round(float(cpu_rate["trainer (fast)"] / cpu_rate["trainer (old)"]), 3),
               "cpu_time_fast_vs_bare": round(float(cpu_rate["trainer (fast)"] / cpu_rate["bare channels_last"]), 3),
               "mflop_per_image_step": round(step_flops / 1e6, 2),
               "mflop_per_image_forward": round(forward_flops / 1e6, 2),
               "matmul_peak_gflop_per_s": round(peak, 1),
               "settings": {"old": LEGACY, "fast": {"memory_format": fast.config.memory_format,
                                                    "data_path": fast.config.data_path}},
               "setting": {"dataset": "fashion-mnist", "batch_size": args.batch_size, "image_size": args.image_size,
                           "backbone": args.backbone, "images": len(images), "reps": args.reps,
                           "warmup": args.warmup, "threads": torch.get_num_threads(), "augment": True}}
    _lib.save("loop_overhead", table, summary, device, args, extra_tables={"settings": settings})


def settings_table(model: BareModel, images: torch.Tensor, labels: torch.Tensor, reps: int,
                   device: torch.device) -> pd.DataFrame:
    """Seconds of one bare training step on one batch under each setting tried, alternating, and images/s relative
    to channels_last: the settings that did not make it into the defaults, measured."""
    nchw = BareModel(copy.deepcopy(model.backbone), copy.deepcopy(model.fc)).to(memory_format=torch.contiguous_format)
    fast = BareModel(copy.deepcopy(model.backbone), copy.deepcopy(model.fc))
    optimizers = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3) for m in (nchw, fast)}

    def step(m: BareModel, inputs: torch.Tensor, context=None):
        def run() -> None:
            m.train()
            with context() if context else contextlib.nullcontext():
                bare_step(m, optimizers[id(m)], inputs, labels)
        return run

    def denormals_flushed():
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)

    contiguous = images.contiguous()
    tasks = {"NCHW (contiguous)": step(nchw, contiguous), "channels_last": step(fast, images),
             "channels_last, denormals flushed": step(fast, images, contextlib.contextmanager(denormals_flushed)),
             "channels_last, oneDNN off": step(fast, images, lambda: torch.backends.mkldnn.flags(enabled=False)),
             "channels_last, bf16 autocast": step(fast, images, lambda: torch.autocast("cpu", dtype=torch.bfloat16))}
    seconds = _lib.interleaved(tasks, reps=reps, warmup=1, device=device)
    reference = _lib.median(seconds["channels_last"])
    return pd.DataFrame([{"setting": name, "step_s": _lib.median(values), "images_per_s": len(images)
                          / _lib.median(values), "vs_channels_last": reference / _lib.median(values),
                          "spread": _lib.spread(values)} for name, values in seconds.items()])


class BareModel(torch.nn.Module):
    """timm's forward_features, mean pooling and a linear layer, in channels_last: no package code."""

    def __init__(self, backbone: torch.nn.Module, fc: torch.nn.Linear) -> None:
        super().__init__()
        self.backbone, self.fc = backbone.to(memory_format=torch.channels_last), fc

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone.forward_features(images).mean(dim=(2, 3)))


def normalised(split) -> tuple[torch.Tensor, torch.Tensor]:
    """A tensor-path split's images through its evaluation normalisation, once, in channels_last, and labels."""
    images = normalize(split.images, split.transform.mean, split.transform.std)
    return images.contiguous(memory_format=torch.channels_last), split.labels


def bare_step(model, optimizer, images, labels) -> None:
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_loop(model, images, labels, batch_size):
    """One epoch: a shuffled order, batches by indexing, a plain step each."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def epoch() -> None:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            chosen = order[start:start + batch_size]
            batch = images[chosen].contiguous(memory_format=torch.channels_last)
            bare_step(model, optimizer, batch, labels[chosen])

    return epoch


if __name__ == "__main__":
    main()

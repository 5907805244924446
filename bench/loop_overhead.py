"""The package's training loop against a bare timm + torch loop: throughput over an epoch.

Both train the same model (the backbone with an FC head, full fine-tuning: the cheapest head, where loop
overhead shows most) from the same initial weights on the same data (digits training images, augmentation
on, the same DataLoader settings the Trainer uses) with the same batch size and optimiser (Adam, lr 1e-3).

- Trainer: `node_transfer.training.Trainer.train_epoch` (per-epoch re-seeding, NFE and regularisation
  accounting, loss/accuracy totals, solver-failure guard, progress bar off);
- bare: `for images, labels in loader: loss = cross_entropy(model(images), labels); zero_grad; backward; step`.

Epochs of the two alternate (A B B A ...); the ratio is Trainer images/s over bare images/s.

    .venv/bin/python bench/loop_overhead.py [--device cpu|cuda] [--quick] [--compile]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _lib
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from node_transfer.config import ExperimentConfig
from node_transfer.heads import build_head
from node_transfer.model import TransferModel
from node_transfer.training import Trainer

TARGET = 0.95  # Trainer throughput at least 95% of the bare loop's


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=640, help="training images per epoch (0 = all 1293)")
    p.add_argument("--reps", type=int, default=6, help="timed epochs per loop, alternating")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs per loop first")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps, args.warmup = 128, 2, int(args.compile)  # compiling belongs to warm-up
    device = _lib.resolve_device(args.device, args.threads)
    backbone, data_config = _lib.load_backbone(args, device)
    splits = _lib.digits(data_config, args.image_size, augment=True)
    train = Subset(splits.train, range(args.images)) if args.images else splits.train
    torch.manual_seed(0)
    head = build_head("fc", backbone.num_features, splits.num_classes)
    config = ExperimentConfig.from_dict({"head": "fc", "batch_size": args.batch_size, "seed": 0,
                                         "device": args.device, "lr": 1e-3, "optimizer": "adam"})

    trainer_model = TransferModel(_lib.maybe_compile(_lib.fresh_copy(backbone), args.compile),
                                  _lib.fresh_copy(head)).to(device)
    bare_model = TransferModel(_lib.maybe_compile(_lib.fresh_copy(backbone), args.compile),
                               _lib.fresh_copy(head)).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(trainer_model, config, train, splits.val, device, Path(tmp), progress=False)
        bare = bare_loop(bare_model, train, config, device)
        state = {"epoch": 0}

        def trainer_epoch():
            trainer.train_epoch(state["epoch"])
            state["epoch"] += 1

        _lib.log(f"timing epochs of {len(train)} images, batch {args.batch_size}, {args.image_size} px, "
                 "full fine-tuning, FC head")
        seconds = _lib.interleaved({"trainer": trainer_epoch, "bare": bare}, reps=args.reps, warmup=args.warmup,
                                   device=device)
    rows = []
    bare_s = _lib.median(seconds["bare"])
    for name in ("bare", "trainer"):
        s = _lib.median(seconds[name])
        rows.append({"loop": name, "images": len(train), "epoch_s": s, "images_per_s": len(train) / s,
                     "throughput_vs_bare": bare_s / s, "spread": _lib.spread(seconds[name]),
                     "epochs_s": " ".join(f"{x:.3f}" for x in seconds[name])})
    table = pd.DataFrame(rows)
    ratio = float(table.iloc[1]["throughput_vs_bare"])
    summary = {"headline": "Trainer images/s over bare loop images/s (full fine-tuning, FC head)",
               "value": round(ratio, 4), "target": f">= {TARGET}", "pass": bool(ratio >= TARGET),
               "setting": {"batch_size": args.batch_size, "image_size": args.image_size, "backbone": args.backbone,
                           "images": len(train), "reps": args.reps, "warmup": args.warmup,
                           "num_workers": config.num_workers}}
    _lib.save("loop_overhead", table, summary, device, args)


def bare_loop(model, train, config, device):
    """The plain loop, with the DataLoader arguments the Trainer uses (shuffle, batch size, workers, pinning).

    Inputs are moved as the Trainer moves them (no channels_last conversion of the batch: the model is
    channels_last on CUDA either way), so that the two differ only in the loop itself.
    """
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(train, batch_size=config.batch_size, shuffle=True, generator=generator,
                        num_workers=config.num_workers, pin_memory=device.type == "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def epoch():
        model.train()
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            _lib.bare_step(model, optimizer, images, labels, device)

    return epoch


if __name__ == "__main__":
    main()

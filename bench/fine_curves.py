"""What fine curves cost: an epoch of the overfitting regime's `rk` arm with and without them, timed alternately.

Fine curves (`run.fine_curves`: every batch's training loss in `fine.csv`, and a fixed validation subset
evaluated `fine_evals` times per epoch) add evaluation work to every epoch (an epoch here: its training and its
validation on the 5,000 validation images). The arm of the `overfit` suite's
`fmnist` profile (seed 0, the NODE head solved by dopri5 at 1e-5, 5,000 training images, as the suite runner plans
a new seed) is built once by the package (`experiment.prepare`) and trained by its `Trainer`: epochs without fine
curves and with them (the package's defaults, or --evals / --subset) alternate after an untimed warm-up epoch each.
The overfitting regime has the fewest training images per epoch of the fine-tune suites, so its relative cost is
the largest a suite pays.

Target: at most 5 % more time per epoch (the median over the timed rounds, CPU time of this process).

    .venv/bin/python bench/fine_curves.py [--images 5000] [--evals 8] [--subset 1000] [--reps 3] [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import _lib
import pandas as pd
import torch

from node_transfer.core.config import ExperimentConfig
from node_transfer.run.experiment import prepare
from node_transfer.run.training import Trainer
from node_transfer.suites.runner import plan, suite_speed

TARGET = 0.05
DEFAULTS = ExperimentConfig()


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument("--images", type=int, default=5000, help="training images per epoch (the overfit suite's 5,000)")
    p.add_argument("--evals", type=int, default=DEFAULTS.fine_evals, help="subset evaluations per epoch")
    p.add_argument("--subset", type=int, default=DEFAULTS.fine_val_size, help="images of the validation subset")
    p.add_argument("--reps", type=int, default=3, help="timed epochs of each kind, alternating")
    p.add_argument("--data-dir", default=str(_lib.CACHE / "data"), help="receives the decompressed Fashion-MNIST")
    args = p.parse_args()
    if args.quick:
        args.images, args.reps = 256, 1
    device = _lib.resolve_device(args.device, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "suite"
        overrides = {"data_dir": args.data_dir, "device": args.device, "train_subset": args.images,
                     "fine_evals": 0}
        planned = plan("overfit", "fmnist", 1, out, overrides, speed=suite_speed(out, resume=False, seeds=1))
        config = next(config for run, _, config in planned if run.label == "rk").replace(init_from=None)  # ImageNet
        prepared = prepare(config)
        trainers = {evals: Trainer(prepared.model, prepared.config.replace(fine_evals=evals, fine_val_size=args.subset),
                                   prepared.splits.train, prepared.splits.val, device, Path(tmp) / f"run-{evals}",
                                   progress=False) for evals in (0, args.evals)}
        rows = []
        for round_ in range(args.reps + 1):  # round 0 is the warm-up
            for evals in ((0, args.evals) if round_ % 2 == 0 else (args.evals, 0)):
                wall, cpu = time.perf_counter(), time.process_time()
                trainers[evals].train_epoch(round_)
                trainers[evals].evaluate(trainers[evals].val_loader, round_)  # the epoch's own validation
                rows.append({"round": round_, "fine_evals": evals, "wall_s": time.perf_counter() - wall,
                             "cpu_s": time.process_time() - cpu})
                _lib.log(f"round {round_}, fine_evals {evals}: {rows[-1]['cpu_s']:.1f} s CPU")
    table = pd.DataFrame(rows)
    timed = table[table["round"] > 0]
    median = {evals: statistics.median(timed.loc[timed["fine_evals"] == evals, "cpu_s"]) for evals in (0, args.evals)}
    extra = median[args.evals] / median[0] - 1
    summary = {"headline": "extra time per epoch with fine curves (overfit suite's rk arm, CPU time, median)",
               "value": round(extra, 4), "target": f"at most {TARGET:.0%}", "pass": bool(extra <= TARGET),
               "setting": {"images": args.images, "fine_evals": args.evals, "fine_val_size": args.subset,
                           "batches_per_epoch": len(trainers[0].train_loader), "reps": args.reps,
                           "threads": torch.get_num_threads()}}
    _lib.save("fine_curves", table, summary, device, args)


if __name__ == "__main__":
    main()

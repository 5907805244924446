"""What an epoch of every suite arm costs, the arms timed alternately in one process: a NODE arm over its matched
control and over the baseline, from one session on one machine.

The arms of the `paper` suite's `fmnist` profile (and of the `overfit` suite's, `rk-imagenet` included), seed 0,
planned by the suite runner as it plans a new seed today (`suites.runner.plan` with `suite_speed`: the suite's
parameters, channels_last, the tensor data path, the `lean` ODE backend), on one thread unless --threads says
otherwise. Each arm is built by the package (`experiment.prepare`) and trained by its `Trainer` on real
Fashion-MNIST images. The continued arms start from one shared checkpoint, put where their `init_from` points:
by default the first suite's baseline configuration (ImageNet weights) trained on one slice of batches, a
baseline-like state built here; with --init-from, a trained baseline. The arms of one suite are then timed in
rounds, alternately (A B C, C B A, ...), after untimed warm-up rounds: in each round every arm trains on a slice
of its training epoch (`--batches` batches of the suite's size; a new epoch of the `Trainer` each time, so the
data are shuffled and augmented as in a run) and evaluates a slice of the validation set (`--val-batches`
batches). Process CPU time and wall time are recorded for both; NFE per batch as the `Trainer` counts them.

Each round's slices are scaled to a whole epoch of the suite (its training images, then its 5,000 validation
images) and each NODE arm's epoch is divided by that of the arm it is priced against in the same round
(`node_transfer.pages.epoch_cost`). The ratios are stated on CPU time: with one thread it is the time spent
computing, while the wall time of a shared machine also holds the time spent waiting for a core. The NFE are
those of a continued run's first batches; they grow as the dynamics train (the suites record each epoch's), and a NODE
arm's later epochs cost more with them.

Target: the headline ratio (rk over fc-adam, in the first suite timed) is stable: every round within 10 % of the
median.

    .venv/bin/python bench/arm_cost.py [--suites paper overfit] [--batches 6] [--val-batches 4] [--reps 5]
                                       [--init-from RUN_DIR] [--quick]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _lib
import pandas as pd
import torch

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.rundir import BEST, load_init_from
from node_transfer.pages.epoch_cost import epoch_seconds, pair_ratios
from node_transfer.run.experiment import prepare
from node_transfer.run.training import Trainer
from node_transfer.suites.registry import SuiteRun, get_suite
from node_transfer.suites.runner import plan, suite_speed

PROFILE = "fmnist"
SUITES = ("paper", "overfit")
HEADLINE = ("rk", "fc-adam")  # in the first suite timed (by default `paper`)
TOLERANCE = 0.10  # every round's headline ratio within this fraction of the median
SET_BY_SUITE = ("backbone", "weights", "image_size", "batch_size")


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1, **{name: None for name in SET_BY_SUITE})
    p.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES), help="the suites whose arms to time")
    p.add_argument("--batches", type=int, default=6, help="training batches per arm and round")
    p.add_argument("--val-batches", type=int, default=4, help="validation batches per arm and round")
    p.add_argument("--reps", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--data-dir", default=str(_lib.CACHE / "data"), help="receives the decompressed Fashion-MNIST")
    p.add_argument("--init-from", default=None,
                   help="a trained baseline (run directory or checkpoint) for the continued arms to start from, "
                        "instead of the one built here")
    args = p.parse_args()
    for name in SET_BY_SUITE:
        if getattr(args, name) is not None:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: set by the suite's {PROFILE} profile here")
    if args.compile:
        p.error("--compile: the arms run as the suite's runs do, uncompiled")
    if args.quick:
        args.batches, args.val_batches, args.reps, args.warmup = 1, 1, 2, 1
    device = _lib.resolve_device(args.device, args.threads)
    rounds, arms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "suites"  # where the planned runs would go: the continued arms' init_from is in it
        planned = {suite: planned_arms(suite, out, args) for suite in args.suites}
        shared_baseline(planned, out, args)
        for suite in args.suites:
            timed, described = time_suite(suite, planned[suite], args, device, Path(tmp) / "timed" / suite)
            rounds += timed
            arms += described
    rounds_table = epoch_seconds(pd.DataFrame(rounds))
    ratios = pair_ratios(rounds_table)
    table = summarise(rounds_table, pd.DataFrame(arms))
    first = args.suites[0]
    headline = ratios[(ratios["suite"] == first) & (ratios["arm"] == HEADLINE[0])
                      & (ratios["control"] == HEADLINE[1])].iloc[0]
    value = float(headline["ratio_cpu"])
    worst = max(value - headline["low_cpu"], headline["high_cpu"] - value) / value
    summary = {
        "headline": f"rk over fc-adam, seconds per epoch ({first} suite, {PROFILE} profile), one session, CPU time",
        "value": round(value, 3), "target": f"every round within {TOLERANCE:.0%} of the median",
        "pass": bool(worst <= TOLERANCE), "worst_round_deviation": round(float(worst), 3),
        "ratios": {f"{r.suite}: {r.arm} / {r.control}": {"cpu": round(r.ratio_cpu, 3), "cpu_low": round(r.low_cpu, 3),
                                                         "cpu_high": round(r.high_cpu, 3),
                                                         "wall": round(r.ratio_wall, 3)} for r in ratios.itertuples()},
        "settings": {row["arm"]: {k: row[k] for k in ("memory_format", "data_path", "ode_backend")}
                     for _, row in table.iterrows() if row["suite"] == first},
        "setting": {"profile": PROFILE, "suites": args.suites, "batches": args.batches,
                    "val_batches": args.val_batches, "reps": args.reps, "warmup": args.warmup,
                    "threads": torch.get_num_threads(), "seed": 0,
                    "shared_checkpoint": args.init_from or f"the {args.suites[0]} suite's baseline configuration, "
                                                           f"ImageNet weights, {args.batches} training batches"},
    }
    _lib.save("arm_cost", table, summary, device, args,
              extra_tables={"ratios": ratios, "rounds": rounds_table})


def planned_arms(suite: str, out: Path, args) -> list[tuple[SuiteRun, ExperimentConfig]]:
    """Seed 0 of every arm of `suite`, planned by the suite runner as a new seed is today (`suite_speed` of a
    new suite: the fast settings), on a slice of the training images."""
    batch = get_suite(suite, PROFILE)[0].params["batch_size"]
    overrides = {"data_dir": args.data_dir, "device": args.device, "train_subset": args.batches * batch}
    planned = plan(suite, PROFILE, 1, out, overrides, speed=suite_speed(out, resume=False, seeds=1))
    return [(run, config) for run, _, config in planned]


def shared_baseline(planned: dict[str, list[tuple[SuiteRun, ExperimentConfig]]], out: Path, args) -> None:
    """The checkpoint every continued arm starts from (their `init_from`, `out/baseline-s0`): the given trained
    baseline, or the first suite's baseline trained here on one slice; saved once as that run's best epoch."""
    target = out / "baseline-s0" / BEST
    target.parent.mkdir(parents=True, exist_ok=True)
    if args.init_from:
        _lib.log(f"shared checkpoint: {args.init_from}")
        torch.save(load_init_from(Path(args.init_from)), target)
        return
    suite = next(iter(planned))
    config = next(config for run, config in planned[suite] if run.label == "baseline")
    prepared = prepare(config)
    trainer = Trainer(prepared.model, prepared.config, prepared.splits.train, prepared.splits.val,
                      prepared.device, out / "shared-baseline", progress=False)
    _lib.log(f"shared baseline-like checkpoint: {args.batches} batches of the {suite} suite's baseline")
    trainer.train_epoch(0)
    torch.save(trainer.checkpoint(), target)


def time_suite(suite: str, planned: list[tuple[SuiteRun, ExperimentConfig]], args, device: torch.device,
               tmp: Path) -> tuple[list[dict], list[dict]]:
    """Every arm of one suite, built and timed alternately: one row per arm and round, and one per arm."""
    trainers, arms, epochs = {}, [], {}
    for run, planned_config in planned:
        batch = planned_config.batch_size
        start = time.perf_counter()
        prepared = prepare(planned_config)
        config = prepared.config
        val = prepared.splits.val.subset(range(args.val_batches * batch))
        trainers[run.label] = Trainer(prepared.model, config, prepared.splits.train, val, device, tmp / run.label,
                                      progress=False)
        epochs[run.label] = 0
        arms.append({"suite": suite, "arm": run.label, "head": config.head,
                     "solver": config.solver if config.head == "node" else "–",
                     "rtol": config.rtol if config.head == "node" else None,
                     "gradients": ("adjoint" if config.adjoint else "backprop") if config.head == "node" else "–",
                     "optimizer": f"{config.optimizer} lr {config.lr:g}", "from": run.init_from or "ImageNet",
                     "params_head": prepared.model.parameter_counts()["params_head"],
                     "memory_format": config.memory_format, "data_path": config.data_path,
                     "ode_backend": config.ode_backend, "augment": config.augment, "batch_size": batch,
                     "train_images": len(prepared.splits.train), "val_images": len(val),
                     "epoch_train_images": run.params["train_subset"], "epoch_val_images": run.params["val_size"]})
        _lib.log(f"{suite}/{run.label}: built in {time.perf_counter() - start:.1f} s ({config.memory_format}, "
                 f"{config.data_path}, {config.ode_backend})")

    def one_round(label: str):
        def run() -> dict:
            trainer = trainers[label]
            epochs[label] += 1
            wall, cpu = time.perf_counter(), time.process_time()
            train = trainer.train_epoch(epochs[label])
            wall_train, cpu_train = time.perf_counter() - wall, time.process_time() - cpu
            wall, cpu = time.perf_counter(), time.process_time()
            val = trainer.evaluate(trainer.val_loader, epochs[label])
            return {"train_s": wall_train, "train_cpu_s": cpu_train, "val_s": time.perf_counter() - wall,
                    "val_cpu_s": time.process_time() - cpu, "nfe_forward": train["nfe_forward"],
                    "nfe_backward": train["nfe_backward"], "nfe_eval": val["nfe"], "train_loss": train["train_loss"]}
        return run

    results: dict[str, list[dict]] = {label: [] for label in trainers}
    _lib.log(f"{suite}: {len(trainers)} arms, {args.batches} training and {args.val_batches} validation batches "
             f"each, {args.warmup} warm-up and {args.reps} timed round(s)")
    _lib.interleaved({label: one_round(label) for label in trainers}, reps=args.reps, warmup=args.warmup,
                     device=device, on_result=lambda label, result: results[label].append(result))
    rounds = [{"suite": suite, "arm": arm["arm"], "round": number, "train_images": arm["train_images"],
               "val_images": arm["val_images"], "epoch_train_images": arm["epoch_train_images"],
               "epoch_val_images": arm["epoch_val_images"], **result}
              for arm in arms for number, result in enumerate(results[arm["arm"]])]
    return rounds, arms


def summarise(rounds: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    """One row per arm: medians over the rounds of seconds per batch (wall and CPU), images per second, NFE per
    batch and the epoch's seconds at the suite's scale, with the spread of the epoch's CPU seconds."""
    rows = []
    for _, arm in arms.iterrows():
        own = rounds[(rounds["suite"] == arm["suite"]) & (rounds["arm"] == arm["arm"])]

        def med(column: str, own: pd.DataFrame = own) -> float:
            return _lib.median(list(own[column]))

        train_batches = arm["train_images"] / arm["batch_size"]
        rows.append({**arm.to_dict(), "train_s_per_batch": med("train_s") / train_batches,
                     "train_cpu_s_per_batch": med("train_cpu_s") / train_batches,
                     "images_per_s": arm["train_images"] / med("train_s"),
                     "images_per_cpu_s": arm["train_images"] / med("train_cpu_s"),
                     "val_cpu_s_per_batch": med("val_cpu_s") / (arm["val_images"] / arm["batch_size"]),
                     "nfe_forward": med("nfe_forward"), "nfe_backward": med("nfe_backward"),
                     "nfe_eval": med("nfe_eval"), "epoch_cpu_s": med("epoch_cpu_s"), "epoch_s": med("epoch_s"),
                     "spread": _lib.spread(list(own["epoch_cpu_s"]))})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()

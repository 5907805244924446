"""The lean backend against torchdiffeq on the head sweeps' NODE runs: the same NFE and accuracy, in less time.

The NODE configurations of the `heads` suite, on digits (cpu profile) and Fashion-MNIST (fmnist profile): dopri5
at 1e-5 by backpropagation (`node`) and dopri5 at 1e-3 by the adjoint (`node-adjoint`), head-only training on
cached Lite0 features, run through the package (`run_experiment`, as a suite runs them) once with
`ode_backend=torchdiffeq` (what every committed run used) and once with `ode_backend=lean` (new runs), seed 0,
fewer epochs than the suite. Per epoch: NFE per batch (forward, backward), training loss and accuracy, validation
accuracy, seconds; at the end the test accuracy. Where the committed run of that configuration and seed exists
(results/heads-*/LABEL-s0), its NFE and training loss are put beside them (features extracted afresh here, as
`make reproduce` does; the losses may differ from the committed ones in the last digits).

Target: NFE equal in every epoch, and test accuracy within 0.2 points of torchdiffeq's.

    .venv/bin/python bench/lean_equivalence.py [--quick]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import _lib
import pandas as pd
import torch

from node_transfer.core.config import ExperimentConfig
from node_transfer.core.rundir import read_history, read_json
from node_transfer.run.experiment import cpu_description, run_experiment
from node_transfer.suites.registry import heads_suite

PROFILES = {"cpu": ("digits", 5), "fmnist": ("Fashion-MNIST", 1)}  # profile -> (data, epochs)
LABELS = ("node", "node-adjoint")
BACKENDS = ("torchdiffeq", "lean")
ACC_TOLERANCE = 0.002


def run(params: dict, backend: str, epochs: int, out: Path) -> tuple[pd.DataFrame, dict]:
    """One run through the package; its history and metrics."""
    config = ExperimentConfig.from_dict({**params, "ode_backend": backend, "epochs": epochs, "seed": 0,
                                         "feature_cache": str(_lib.CACHE / "features"), "out": str(out)})
    run_dir = run_experiment(config, progress=False)
    return read_history(run_dir), read_json(run_dir / "metrics.json")


def main() -> None:
    p = _lib.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    device = _lib.resolve_device("cpu", args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for profile, (data, epochs) in PROFILES.items():
            epochs = 1 if args.quick else epochs
            suite = {r.label: r for r in heads_suite(profile)}
            for label in LABELS:
                committed = _lib.ROOT / "results" / f"heads-{profile}" / f"{label}-s0" / "history.csv"
                reference = read_history(committed.parent) if committed.is_file() else None
                for backend in BACKENDS:
                    _lib.log(f"{data} {label} with {backend}: {epochs} epoch(s)")
                    history, metrics = run(suite[label].params, backend, epochs, Path(tmp) / f"{profile}-{label}-"
                                           f"{backend}")
                    for _, epoch in history.iterrows():
                        row = {"data": data, "run": label, "backend": backend, "epoch": int(epoch["epoch"]),
                               "nfe_forward": epoch["nfe_forward"], "nfe_backward": epoch["nfe_backward"],
                               "train_loss": epoch["train_loss"], "train_acc": epoch["train_acc"],
                               "val_acc": epoch["val_acc"], "seconds": epoch["seconds"],
                               "test_acc": metrics["test_acc"] if epoch["epoch"] == epochs else None}
                        if reference is not None and epoch["epoch"] <= len(reference):
                            committed_epoch = reference.iloc[int(epoch["epoch"]) - 1]
                            row.update(committed_nfe_forward=committed_epoch["nfe_forward"],
                                       committed_train_loss=committed_epoch["train_loss"])
                        rows.append(row)
    table = pd.DataFrame(rows)
    pairs = table.pivot_table(index=["data", "run", "epoch"], columns="backend",
                              values=["nfe_forward", "nfe_backward", "val_acc", "seconds", "train_loss"])
    nfe_gap = max((pairs["nfe_forward"]["lean"] - pairs["nfe_forward"]["torchdiffeq"]).abs().max(),
                  (pairs["nfe_backward"]["lean"] - pairs["nfe_backward"]["torchdiffeq"]).abs().max())
    tests = table[table["test_acc"].notna()].pivot_table(index=["data", "run"], columns="backend", values="test_acc")
    acc_gap = float((tests["lean"] - tests["torchdiffeq"]).abs().max())
    speedup = pairs["seconds"]["torchdiffeq"] / pairs["seconds"]["lean"]
    committed = table[table["committed_train_loss"].notna()] if "committed_train_loss" in table else table.iloc[:0]
    summary = {
        "headline": "lean against torchdiffeq on the heads suite's NODE runs (digits, Fashion-MNIST): largest NFE "
                    "difference in any epoch",
        "value": float(nfe_gap), "target": f"0 (and test accuracy within {ACC_TOLERANCE * 100:g} points)",
        "pass": bool(nfe_gap == 0 and acc_gap <= ACC_TOLERANCE),
        "test_acc_gap_points": round(acc_gap * 100, 3),
        "val_acc_gap_points": round(float((pairs["val_acc"]["lean"] - pairs["val_acc"]["torchdiffeq"]).abs().max())
                                    * 100, 3),
        "train_loss_gap": float((pairs["train_loss"]["lean"] - pairs["train_loss"]["torchdiffeq"]).abs().max()),
        "epoch_speedup": {f"{d} {r}": round(float(speedup.loc[(d, r)].median()), 2)
                          for d, r in sorted({(i[0], i[1]) for i in speedup.index})},
        "committed_epochs_compared": int(len(committed) // len(BACKENDS)),
        "committed_nfe_equal": bool(len(committed) and (committed["nfe_forward"] == committed["committed_nfe_forward"]
                                                         ).all()),
        "committed_train_loss_gap": float((committed["train_loss"] - committed["committed_train_loss"]).abs().max())
        if len(committed) else None,
        "cpu": cpu_description(), "torch_threads": torch.get_num_threads(),
        "setting": {"profiles": {k: {"data": d, "epochs": e} for k, (d, e) in PROFILES.items()}, "runs": LABELS,
                    "seed": 0},
    }
    _lib.save("lean_equivalence", table, summary, device, args)


if __name__ == "__main__":
    main()

"""The paper's claims and our questions, each answered by seed-paired tests against the right control.

A verdict is computed, never typed: `statistics.paired_compare` on the per-seed differences, with an
equivalence margin for "same accuracy" claims (`ACCURACY_MARGIN`), and "undecided" where the data cannot tell.
Stability statistics are recomputed for each pair over one late window of equal length (`common_window`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .statistics import (
    STABILITY_COLUMNS,
    PairedComparison,
    better_verdict,
    by_seed,
    common_window,
    falls_below_best,
    paired_compare,
    same_value_verdict,
    stability_statistics,
)

#: "Same accuracy" means a paired mean difference within ±0.5 points, shown by two one-sided tests.
ACCURACY_MARGIN = 0.005
#: Statistics where a higher value is better; every other compared statistic is better lower.
HIGHER_IS_BETTER = {"test_acc", "val_acc", "train_acc"}
#: Readable names of the compared statistics and the scale they are shown in.
STATISTIC_NAMES = {"test_acc": ("test accuracy", 100, "points"), "val_loss_rise": ("val-loss rise", 1, ""),
                   "train_loss_rise": ("train-loss rise", 1, ""),
                   "val_acc_drop": ("val-acc drop", 100, "points"), "val_acc_worst_drop": ("worst val-acc drop", 100,
                                                                                             "points"),
                   "test_nll": ("test NLL", 1, ""), "test_ece": ("test ECE", 100, "points"),
                   "epochs_to_target": ("epochs to the baseline's val acc", 1, ""),
                   "seconds_per_epoch": ("seconds per epoch", 1, "")}
#: "More stable" is tested on the validation loss and on the training loss (statistics module docstring): the
#: statistic of each test, and what its claim appends to say which one it is.
STABILITY_TESTS = (("val_loss_rise", ""), ("train_loss_rise", ", by training loss"))


def _has(runs: pd.DataFrame, *labels: str) -> bool:
    return all((runs["label"] == label).any() for label in labels)


def stability_by_seed(histories: pd.DataFrame, label: str, column: str, window: int) -> pd.Series:
    """A stability statistic of one configuration per seed, over the last `window` changes."""
    values = {seed: stability_statistics(history, window)[column]
              for seed, history in histories[histories["label"] == label].groupby("seed")}
    return pd.Series(values, name=label, dtype=float)


def epochs_to_target(histories: pd.DataFrame, runs: pd.DataFrame, label: str, reference: str = "baseline"
                     ) -> pd.Series:
    """Per seed: the first epoch at which `label` reached the reference run's validation accuracy (NaN: never)."""
    targets = by_seed(runs, reference, "val_acc")
    result = {}
    for seed, history in histories[histories["label"] == label].groupby("seed"):
        if seed not in targets.index:
            continue
        reached = history.loc[history["val_acc"] >= targets[seed], "epoch"]
        result[seed] = float(reached.min()) if len(reached) else math.nan
    return pd.Series(result, name=label, dtype=float)


def compare(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, statistic: str,
            margin: float | None = None) -> PairedComparison:
    """`a` against `b` on one statistic, seeds paired (stability over a common late window)."""
    higher = statistic in HIGHER_IS_BETTER
    if statistic in STABILITY_COLUMNS:
        epochs = histories[histories["label"].isin([a, b])].groupby(["label", "seed"])["epoch"].max()
        window = common_window(epochs.tolist())
        values_a, values_b = (stability_by_seed(histories, label, statistic, window) for label in (a, b))
    elif statistic == "epochs_to_target":
        values_a, values_b = (epochs_to_target(histories, runs, label) for label in (a, b))
    else:
        values_a, values_b = by_seed(runs, a, statistic), by_seed(runs, b, statistic)
    return paired_compare(values_a, values_b, statistic, (a, b), higher_is_better=higher, margin=margin)


def describe(result: PairedComparison) -> str:
    """'a 98.3 vs b 97.9: +0.4 [-1.2, 2.0] points, a better in 2/3 seeds' in the statistic's own scale."""
    name, scale, unit = STATISTIC_NAMES.get(result.statistic, (result.statistic, 1, ""))
    digits = 2 if scale == 100 else 3
    if result.n == 0:
        return f"{name}: no paired seeds"

    def number(x: float) -> str:
        return "nan" if math.isnan(x) else f"{x * scale:.{digits}f}"

    interval = f" [{number(result.ci_low)}, {number(result.ci_high)}]" if result.n >= 2 else ""
    return (f"{name}: {result.a} {number(result.mean_a)} vs {result.b} {number(result.mean_b)}; "
            f"difference {result.mean_diff * scale:+.{digits}f}{interval}{' ' + unit if unit else ''}, "
            f"{result.a} better in {result.a_better_in}/{result.n} seeds")


def _claim(claim: str, control: str, result: PairedComparison, kind: str) -> dict[str, str]:
    verdict = same_value_verdict(result) if kind == "same" else better_verdict(result)
    return {"claim": claim, "against": control, "measured": describe(result), "verdict": verdict}


def paper_claims(runs: pd.DataFrame, histories: pd.DataFrame) -> pd.DataFrame:
    """Each claim of the paper in the fine-tune regime (`paper` suite), against the paper's own comparison and
    against the controls; a row per (claim, comparison) with its numbers and verdict."""
    rows = []

    def add(claim: str, a: str, b: str, statistic: str, kind: str, control: str) -> None:
        if _has(runs, a, b):
            margin = ACCURACY_MARGIN if kind == "same" else None
            rows.append(_claim(claim, control, compare(runs, histories, a, b, statistic, margin), kind))

    for model in ("rk", "adjoint"):
        add(f"{model}: same test accuracy as the baseline", model, "baseline", "test_acc", "same",
            "the paper's baseline")
    add("rk: same test accuracy as FC trained on with its recipe", "rk", "fc-adam", "test_acc", "same",
        "FC continued (control)")
    add("adjoint: same test accuracy as FC trained on with its recipe", "adjoint", "fc-sgd", "test_acc", "same",
        "FC continued (control)")
    def more_stable(claim: str, a: str, b: str, control: str) -> None:
        for statistic, which in STABILITY_TESTS:
            add(claim + which, a, b, statistic, "better", control)

    for model, control in (("rk", "fc-adam"), ("adjoint", "fc-sgd")):
        more_stable(f"{model}: more stable than the baseline", model, "baseline", "the paper's baseline")
        more_stable(f"{model}: more stable than FC trained on with its recipe", model, control,
                    "FC continued (control)")
    more_stable("rk: more stable than a parameter-matched MLP head", "rk", "mlp", "MLP (control)")
    more_stable("rk: more stable than one Euler step", "rk", "euler", "residual block (control)")
    more_stable("adjoint: the most stable model (against rk)", "adjoint", "rk", "rk")
    more_stable("adjoint: more stable than the same NODE by backprop", "adjoint", "node-sgd-backprop",
                "optimizer x gradient cross")
    add("rk: reaches the baseline's val accuracy in fewer epochs than FC trained on", "rk", "fc-adam",
        "epochs_to_target", "better", "FC continued (control)")
    add("adjoint: reaches the baseline's val accuracy in fewer epochs than FC trained on", "adjoint", "fc-sgd",
        "epochs_to_target", "better", "FC continued (control)")
    add("rk: an epoch costs no more than the baseline's", "rk", "baseline", "seconds_per_epoch", "better",
        "the paper's baseline")
    add("adjoint: an epoch costs no more than the baseline's", "adjoint", "baseline", "seconds_per_epoch", "better",
        "the paper's baseline")
    return pd.DataFrame(rows)


def head_claims(runs: pd.DataFrame, histories: pd.DataFrame, node: str = "node") -> pd.DataFrame:
    """Head-only regime (`heads` suite): is the NODE head better, or steadier, than heads without the ODE?"""
    rows = []
    for control, name in (("fc", "linear probe"), ("mlp", "parameter-matched MLP"), ("euler", "one Euler step")):
        if not _has(runs, node, control):
            continue
        rows.append(_claim(f"{node}: same test accuracy as the {name}", name,
                           compare(runs, histories, node, control, "test_acc", ACCURACY_MARGIN), "same"))
        tests = [(statistic, f"more stable than the {name}{which}") for statistic, which in STABILITY_TESTS]
        for statistic, claim in tests + [("test_nll", f"lower test NLL than the {name}"),
                                         ("test_ece", f"better calibrated (ECE) than the {name}")]:
            rows.append(_claim(f"{node}: {claim}", name, compare(runs, histories, node, control, statistic),
                               "better"))
    if _has(runs, "node-adjoint", node):
        for statistic, which in STABILITY_TESTS:
            rows.append(_claim(f"adjoint: more stable than backprop{which}", node,
                               compare(runs, histories, "node-adjoint", node, statistic), "better"))
    return pd.DataFrame(rows)


def continued_cost(runs: pd.DataFrame, histories: pd.DataFrame, label: str, reference: str = "baseline"
                   ) -> dict[str, float | int]:
    """How far a run continued from `reference` got and at what cost, over its finished seeds: test accuracy
    (%), seconds per epoch against the reference's, NFE per batch, epochs run, and the seeds that reached the
    reference's validation accuracy within their budget (with the mean epoch at which they did)."""
    own, ref = runs[runs["label"] == label], runs[runs["label"] == reference]
    reached = epochs_to_target(histories, runs, label, reference).dropna()
    return {"seeds": len(own), "test_acc": float(own["test_acc"].mean() * 100),
            "reference_test_acc": float(ref["test_acc"].mean() * 100),
            "time_ratio": float(own["seconds_per_epoch"].mean() / ref["seconds_per_epoch"].mean()),
            "seconds_per_epoch": float(own["seconds_per_epoch"].mean()),
            "nfe_forward": float(own["nfe_forward"].mean()), "nfe_backward": float(own["nfe_backward"].mean()),
            "epochs": int(histories.loc[histories["label"] == label, "epoch"].max()) if len(own) else 0,
            "reached": len(reached),
            "epochs_to_target": float(reached.mean()) if len(reached) else math.nan}


def claims_by_regime(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The verdict tables of several regimes (e.g. "Fashion-MNIST, fine-tune") as one: a row per claim and regime,
    each with its numbers; claims keep their order, each claim's regimes follow the order of `tables`."""
    columns = ["claim", "regime", "against", "measured", "verdict"]
    frames = [table.assign(regime=regime) for regime, table in tables.items() if len(table)]
    if not frames:
        return pd.DataFrame(columns=columns)
    table = pd.concat(frames, ignore_index=True)
    first_seen = {claim: i for i, claim in reversed(list(enumerate(table["claim"])))}
    order = sorted(range(len(table)), key=lambda i: (first_seen[table["claim"][i]], i))
    return table.loc[order, columns].reset_index(drop=True)


def against_reference(runs: pd.DataFrame, histories: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each configuration of a sweep against a reference one: accuracy, NFE, time, stability and paired verdicts,
    and whether it meets the `beyond` target (test accuracy within the reference's seed std, at least 2x fewer
    forward NFE and 1.5x less time per epoch)."""
    means = runs.groupby("label", sort=False)[["test_acc", "nfe_forward", "nfe_backward", "seconds_per_epoch"]].mean()
    stds = runs.groupby("label", sort=False)["test_acc"].std(ddof=1)
    ref = means.loc[reference]
    table = pd.DataFrame({
        "test %": (means["test_acc"] * 100).round(2),
        "NFE fwd": means["nfe_forward"].round(1), "NFE bwd": means["nfe_backward"].round(1),
        "NFE fwd reduction": (ref["nfe_forward"] / means["nfe_forward"]).round(2),
        "s / epoch": means["seconds_per_epoch"].round(3),
        "speed-up per epoch": (ref["seconds_per_epoch"] / means["seconds_per_epoch"]).round(2),
    }, index=means.index)
    floor = ref["test_acc"] - (stds.loc[reference] if not math.isnan(stds.loc[reference]) else 0.0)
    table["meets target"] = ((means["test_acc"] >= floor) & (table["NFE fwd reduction"] >= 2.0)
                             & (table["speed-up per epoch"] >= 1.5))
    table.loc[reference, "meets target"] = False
    for statistic, name in (("test_acc", "test acc vs ref"), ("val_loss_rise", "val-loss rise vs ref"),
                            ("train_loss_rise", "train-loss rise vs ref")):
        margin = ACCURACY_MARGIN if statistic == "test_acc" else None
        table[name] = ["–" if label == reference else
                       compare(runs, histories, label, reference, statistic, margin).verdict.replace("a ", "")
                       for label in means.index]
    return table.rename_axis("configuration").reset_index()


def worst_fall(histories: pd.DataFrame, label: str, start: pd.Series | None = None) -> dict[str, float]:
    """The largest fall of validation accuracy below its best so far, over every seed of one configuration:
    the seed, the epoch it fell to, the best accuracy before and the accuracy after. `start` (per seed) is the
    validation accuracy the run started from (a continued run's baseline), counted as epoch 0."""
    worst = {"seed": math.nan, "epoch": math.nan, "before": math.nan, "after": math.nan, "fall": 0.0}
    for seed, history in histories[histories["label"] == label].groupby("seed"):
        acc = history["val_acc"].to_numpy(dtype=float)
        epochs = history["epoch"].to_numpy()
        if start is not None and seed in start.index:
            acc, epochs = np.concatenate([[float(start[seed])], acc]), np.concatenate([[0], epochs])
        falls = falls_below_best(acc)
        i = int(falls.argmax())
        if falls[i] > worst["fall"]:
            worst = {"seed": int(seed), "epoch": int(epochs[i]), "before": float(acc[: i + 1].max()),
                     "after": float(acc[i]), "fall": float(falls[i])}
    return worst

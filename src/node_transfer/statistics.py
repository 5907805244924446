"""Statistics of runs: a stability measure for training curves and seed-paired tests with honest verdicts.

**Stability.** The paper claims the NODE head makes training "more stable" without a measure. Ours counts only
what goes *wrong* late in training, over a late window of W epoch-to-epoch changes that has the same length for
every model being compared (so a longer run is not judged on more changes):

- `val_loss_rise`: the mean upward move of the validation loss per epoch, mean(max(0, L_e - L_{e-1})). Steady
  descent and a converged plateau score (near) zero; oscillation and a blow-up score high. Lower is steadier.
- `val_acc_drop`: the same for falls of validation accuracy, mean(max(0, A_{e-1} - A_e)).
- `val_acc_worst_drop`: the largest fall of validation accuracy below its best so far within the window.
- `train_loss_rise`: `val_loss_rise` of the training loss, the loss the optimiser descends. A validation loss
  also rises when a head overfits steadily (training loss still falling), which is not instability; a rising
  training loss is the optimiser itself going wrong (a step too large, a solver whose NFE blow up). So the two
  are reported side by side and a claim of "more stable" is tested on each.

The old statistic (mean |L_e - L_{e-1}| over the second half) counted convergence as instability: a run that
still descends steeply scored worse than one that oscillates mildly. It is kept as `val_loss_tv` for reference.

**Tests.** Runs with the same seed share the train/validation split and the starting checkpoint, so two
configurations are compared through their per-seed differences d = a - b: the mean difference with a paired
t-interval, the paired t-test, and an equivalence test (two one-sided tests, TOST) against a stated margin.
A verdict says "better" or "worse" only when the interval excludes zero, "equivalent" only when TOST passes,
and "undecided" otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: The stability statistics, each "lower is steadier".
STABILITY_COLUMNS = ("val_loss_rise", "val_acc_drop", "val_acc_worst_drop", "train_loss_rise")


def late_changes(values: pd.Series | np.ndarray, window: int) -> np.ndarray:
    """The last `window` epoch-to-epoch changes x_e - x_{e-1} (fewer when the run is shorter)."""
    values = np.asarray(pd.Series(values).dropna(), dtype=float)
    changes = np.diff(values)
    return changes[-window:] if window > 0 else changes[:0]


def mean_rise(changes: np.ndarray) -> float:
    """The mean upward move per change, mean(max(0, change)); NaN when there are no changes."""
    return float(np.clip(changes, 0, None).mean()) if len(changes) else float("nan")


def falls_below_best(acc: np.ndarray) -> np.ndarray:
    """Per epoch, how far the accuracy lies below the best accuracy so far (0 where it is a new best)."""
    return np.maximum.accumulate(acc) - acc


def default_window(epochs: int) -> int:
    """The late window of one run on its own: the changes into the epochs e > E/2 (at least one)."""
    return max(1, epochs - max(1, epochs // 2))


def stability_statistics(history: pd.DataFrame, window: int | None = None) -> dict[str, float]:
    """The stability statistics (module docstring) of one run's history over its last `window` changes.

    With `window=None` the window is the run's second half (`default_window`); comparisons between models pass
    one window for all (`common_window`). Values are NaN when the run has fewer than two epochs.
    """
    loss, acc = history["val_loss"], history["val_acc"]
    window = default_window(len(history)) if window is None else window
    loss_changes, acc_changes = late_changes(loss, window), late_changes(acc, window)
    if len(loss_changes) == 0:
        nan = float("nan")
        return {"val_loss_rise": nan, "val_acc_drop": nan, "val_acc_worst_drop": nan, "train_loss_rise": nan,
                "val_loss_tv": nan, "stability_window": 0}
    acc_values = np.asarray(acc.dropna(), dtype=float)[-(len(acc_changes) + 1):]
    worst = float(np.max(falls_below_best(acc_values)))
    tv_changes = late_changes(loss, default_window(len(history)))
    return {"val_loss_rise": mean_rise(loss_changes), "val_acc_drop": mean_rise(-acc_changes),
            "val_acc_worst_drop": worst, "train_loss_rise": mean_rise(late_changes(history["train_loss"], window)),
            "val_loss_tv": float(np.abs(tv_changes).mean()),
            "stability_window": int(len(loss_changes))}


def common_window(epochs: pd.Series | list[int]) -> int:
    """One late window for a set of runs: the default window of the shortest (0 when a run has one epoch)."""
    shortest = int(min(epochs)) if len(epochs) else 0
    return default_window(shortest) if shortest >= 2 else 0


@dataclass
class PairedComparison:
    """a against b on one statistic, seeds paired: d = a - b."""

    statistic: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    margin: float | None
    tost_p: float
    a_better_in: int
    verdict: str


def paired_compare(a: pd.Series, b: pd.Series, statistic: str = "", names: tuple[str, str] = ("a", "b"),
                   higher_is_better: bool = True, margin: float | None = None, confidence: float = 0.95
                   ) -> PairedComparison:
    """Compare two configurations whose values are indexed by seed, through the per-seed differences.

    Verdict: "a better"/"a worse" when the paired t-interval of the mean difference excludes zero;
    "equivalent (±margin)" when the two one-sided tests at 1 - confidence both reject a difference beyond the
    margin; "equal on every seed" when every difference is exactly zero; otherwise "undecided". Seeds present in
    only one of a, b are left out; NaNs too.
    """
    paired = pd.concat({"a": a, "b": b}, axis=1).dropna()
    d = (paired["a"] - paired["b"]).to_numpy(dtype=float)
    n = len(d)
    mean_a, mean_b = (float(paired[c].mean()) if n else float("nan") for c in ("a", "b"))
    mean_diff = float(d.mean()) if n else float("nan")
    better = (d > 0) if higher_is_better else (d < 0)
    nan = float("nan")
    ci_low = ci_high = p_value = tost_p = nan
    alpha = 1 - confidence
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd == 0.0:  # identical differences on every seed: the interval collapses onto the mean
            ci_low = ci_high = mean_diff
            p_value = 1.0 if mean_diff == 0 else 0.0
            if margin is not None:
                tost_p = 0.0 if abs(mean_diff) < margin else 1.0
        else:
            half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
            ci_low, ci_high = mean_diff - half, mean_diff + half
            p_value = float(stats.ttest_1samp(d, 0.0).pvalue)
            if margin is not None:
                lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
                upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
                tost_p = float(max(lower, upper))
    if n < 2:
        verdict = "undecided (fewer than 2 paired seeds)"
    elif np.all(d == 0):
        verdict = "equal on every seed"
    elif ci_low > 0 or ci_high < 0:
        a_higher = ci_low > 0
        verdict = "a better" if a_higher == higher_is_better else "a worse"
    elif margin is not None and tost_p < alpha:
        verdict = f"equivalent (±{margin:g})"
    else:
        verdict = "undecided"
    return PairedComparison(statistic, names[0], names[1], n, mean_a, mean_b, mean_diff, ci_low, ci_high, p_value,
                            margin, tost_p, int(better.sum()), verdict)


def same_value_verdict(result: PairedComparison) -> str:
    """A claim that a and b are the same, within the comparison's margin: holds, does not hold, or undecided.

    Holds when TOST shows equivalence; does not hold when the interval lies wholly outside the margin (a real
    difference larger than it); undecided otherwise."""
    if result.margin is None:
        raise ValueError("a 'same value' claim needs an equivalence margin")
    if result.verdict == "equal on every seed" or (result.n >= 2 and not math.isnan(result.tost_p)
                                                   and result.tost_p < 0.05):
        return "holds"
    if result.n >= 2 and (result.ci_low > result.margin or result.ci_high < -result.margin):
        return "does not hold"
    return "undecided"


def better_verdict(result: PairedComparison) -> str:
    """A claim that a is better than b: holds (interval on a's side), does not hold (a worse, or equivalent
    within the margin), or undecided."""
    if result.verdict == "a better":
        return "holds"
    if result.verdict in ("a worse", "equal on every seed") or result.verdict.startswith("equivalent"):
        return "does not hold"
    return "undecided"


def by_seed(runs: pd.DataFrame, label: str, column: str) -> pd.Series:
    """One configuration's values of a column, indexed by seed."""
    rows = runs[runs["label"] == label]
    return pd.Series(rows[column].to_numpy(dtype=float), index=rows["seed"].to_numpy(), name=label)


def mean_ci(values: pd.Series, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, std, half-width of the t-interval, n) of the finite values."""
    values = pd.Series(values).dropna().astype(float)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return mean, std, half, n

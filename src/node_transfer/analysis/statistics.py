"""Statistics of runs: the registry of everything we compare, and the stability statistics of training curves.

**The registry.** `STATISTICS` names every statistic a claim, a report or a page compares: its readable label, its
kind (accuracy, stability, calibration, speed, cost), which direction is better, how it is shown (scale, unit,
digits) and its *minimum effect of interest*: the smallest difference that counts. A difference smaller than that
can never make a claim "hold" (`paired`). `statistics`, `paired`, `verdicts` and `reporting` all read it.

- Accuracy: ±0.5 points (a "same accuracy" claim is an equivalence test within this margin).
- Stability statistics: **one margin, a quarter of the control's own level of the statistic**, for "holds" and
  "does not hold" alike, so a "does not hold" reads "the ODE does not remove a quarter of the control's
  fluctuation". A loss floor (1 % of the control's loss over the window) guards "holds" only: a steadier curve must
  also be visibly steadier on the plot of its loss (a rise of 0.0005 per epoch on a loss of 0.16 is not).
- Calibration: 0.02 in test NLL, 1 point of expected calibration error; speed: one epoch; cost: 10% of the
  control's seconds per epoch.

**Stability.** The paper claims the NODE head makes training "more stable" without a measure. We compute, over a
late window of W epoch-to-epoch changes, on the validation and on the training loss:

- `*_loss_fluctuation` (the paper's sense: how much the curve wobbles): the standard deviation of the residuals
  of a straight line fitted to the loss over the window's W + 1 epochs. A steady descent, a plateau and steady
  overfitting (a loss rising along a line) all score (near) zero; only movement around the trend counts.
  The sensitivity checks swap in a quadratic trend, the plain SD of the window and the SD of its changes.
- `*_loss_rise`: the mean upward move per epoch, mean(max(0, L_e - L_{e-1})). Steady descent scores zero, but
  steady overfitting (a validation loss rising while the training loss falls) scores as much as oscillation.
- `val_acc_drop`: the mean fall of validation accuracy per epoch; `val_acc_worst_drop`: the largest fall below
  its best so far within the window.

**The window, per pair.** Two runs of one seed are compared over the same window: the second half of the changes of
the shorter of the two (`pair_window`), declared to hold at least `MIN_WINDOW` = 4 changes. Each seed's pair has its
own window, so a run stopped early shortens its own seed's window only; a pair that cannot give 4 changes leaves its
seed out of that test, named in the test's note.

A validation loss also rises when a head overfits steadily, which is not instability; a training loss that rises
or wobbles is the optimiser itself going wrong (a step too large, a solver whose NFE blow up). So every claim of
"more stable" is tested on both curves, and `verdicts` labels a steadier validation loss that comes with a worse
training fit "overfits more slowly". The old statistic (mean |L_e - L_{e-1}| over the second half) counted
convergence as instability; it is kept as `val_loss_tv` for reference only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Statistic:
    """One compared statistic: how it reads, which way is better, and its minimum effect of interest."""

    name: str
    label: str
    kind: str  # accuracy, stability, calibration, speed, cost
    higher_is_better: bool
    scale: float = 1.0  # shown as value * scale
    unit: str = ""
    digits: int = 3
    minimum: float = 0.0  # minimum effect of interest, in the statistic's own units ...
    relative: float = 0.0  # ... or this fraction of the control's level, whichever is larger
    loss_floor: float = 0.0  # "holds" also needs an advantage of this fraction of the control's mean loss
    curve: str | None = None  # the history column a curve statistic is computed from
    alternative: str | None = None  # the statistic a sensitivity check swaps in
    meaning: str = ""  # what it measures, in a phrase, for sentences that state a result

    def minimum_effect(self, control_level: float = 0.0) -> float:
        """The smallest difference that counts, for "holds" and "does not hold" alike, given the control's level."""
        candidates = [self.minimum, self.relative * abs(control_level)]
        return float(max(c for c in candidates if not math.isnan(c)))

    def holds_floor(self, loss_level: float = 0.0) -> float:
        """The least advantage that may "hold" besides the margin: a share of the control's loss (0 if none)."""
        floor = self.loss_floor * abs(loss_level)
        return 0.0 if math.isnan(floor) else float(floor)

    def show(self, value: float, signed: bool = False) -> str:
        """The value in display units, e.g. '+0.52' for a 0.0052 accuracy difference."""
        if value is None or math.isnan(value):
            return "nan"
        return f"{value * self.scale:{'+' if signed else ''}.{self.digits}f}"


#: The epochs over which `val_acc_early_mean` averages the validation accuracy: the rising part of the curve in the
#: overfitting regime (declared before its confirmation seeds ran; `claims.CONFIRMATIONS`).
EARLY_EPOCHS = 10
_LOSS_STABILITY = dict(kind="stability", higher_is_better=False, digits=4, relative=0.25, loss_floor=0.01)
#: Every statistic the package compares, by its column name.
STATISTICS: dict[str, Statistic] = {s.name: s for s in (
    Statistic("test_acc", "test accuracy", "accuracy", True, 100, "points", 2, minimum=0.005, alternative="val_acc",
              meaning="test accuracy"),
    Statistic("val_acc", "best validation accuracy", "accuracy", True, 100, "points", 2, minimum=0.005,
              alternative="test_acc"),
    Statistic("val_loss_fluctuation", "val-loss fluctuation", curve="val_loss", alternative="val_loss_rise",
              meaning="validation-loss fluctuation (the SD of the loss around its straight-line trend over the late "
                      "window; lower is steadier)", **_LOSS_STABILITY),
    Statistic("train_loss_fluctuation", "train-loss fluctuation", curve="train_loss",
              alternative="train_loss_rise", **_LOSS_STABILITY),
    Statistic("val_loss_fluctuation_quadratic", "val-loss fluctuation about a quadratic", curve="val_loss",
              **_LOSS_STABILITY),
    Statistic("val_loss_sd", "val-loss SD over the window", curve="val_loss", **_LOSS_STABILITY),
    Statistic("val_loss_change_sd", "SD of the val-loss changes", curve="val_loss", **_LOSS_STABILITY),
    Statistic("fine_val_loss_fluctuation", "fine val-loss fluctuation", curve="fine_val_loss",
              meaning="fluctuation of the validation-subset loss evaluated eight times per epoch (fine curves)",
              **_LOSS_STABILITY),
    Statistic("val_acc_fluctuation", "val-acc fluctuation", "stability", False, 100, "points", 3, minimum=0.0,
              relative=0.25, curve="val_acc"),
    Statistic("val_loss_rise", "val-loss rise", curve="val_loss", alternative="val_loss_fluctuation",
              **_LOSS_STABILITY),
    Statistic("train_loss_rise", "train-loss rise", curve="train_loss", alternative="train_loss_fluctuation",
              **_LOSS_STABILITY),
    Statistic("val_acc_drop", "val-acc drop", "stability", False, 100, "points", 2, minimum=0.001, relative=0.25,
              curve="val_acc"),
    Statistic("val_acc_worst_drop", "worst val-acc drop", "stability", False, 100, "points", 2, minimum=0.001,
              relative=0.25, curve="val_acc"),
    Statistic("test_nll", "test NLL", "calibration", False, 1, "", 3, minimum=0.02),
    Statistic("test_ece", "test ECE", "calibration", False, 100, "points", 2, minimum=0.01),
    Statistic("epochs_to_target", "epochs to the target", "speed", False, 1, "epochs", 1, minimum=1.0,
              meaning="epochs to a validation accuracy both arms can reach (runs that never do count at their "
                      "budget)"),
    Statistic("val_acc_early_mean", f"mean val accuracy over the first {EARLY_EPOCHS} epochs", "speed", True, 100,
              "points", 2, minimum=0.005, alternative="epochs_to_rising_target",
              meaning=f"the mean validation accuracy over the first {EARLY_EPOCHS} epochs (the area under the rising "
                      "part of the curve; higher is quicker)"),
    Statistic("epochs_to_rising_target", "epochs to half the control's gain", "speed", False, 1, "epochs", 1,
              minimum=1.0, meaning="epochs to the validation accuracy halfway from the control's first epoch to its "
                                   "best (runs that never reach it count at their budget)"),
    Statistic("seconds_to_rising_target", "seconds to half the control's gain", "speed", False, 1, "s", 0,
              relative=0.1, meaning="seconds of training to the validation accuracy halfway from the control's "
                                    "first epoch to its best"),
    Statistic("seconds_per_epoch", "seconds per epoch", "cost", False, 1, "s", 1, relative=0.1),
)}


def statistic(name: str) -> Statistic:
    """The registry entry of a statistic; a name not in it is refused with the valid choices."""
    if name not in STATISTICS:
        raise ConfigError("statistic", name, f"one of {sorted(STATISTICS)}")
    return STATISTICS[name]


def names(kind: str) -> tuple[str, ...]:
    """The registry's statistics of one kind, in registry order (e.g. every stability statistic)."""
    return tuple(name for name, s in STATISTICS.items() if s.kind == kind)


def late_values(values: pd.Series | np.ndarray, window: int) -> np.ndarray:
    """The last `window` + 1 values (the epochs the last `window` changes connect); fewer when the run is shorter."""
    values = np.asarray(pd.Series(values).dropna(), dtype=float)
    return values[-(window + 1):] if window > 0 else values[:0]


def late_changes(values: pd.Series | np.ndarray, window: int) -> np.ndarray:
    """The last `window` epoch-to-epoch changes x_e - x_{e-1} (fewer when the run is shorter)."""
    return np.diff(late_values(values, window))


def mean_rise(changes: np.ndarray) -> float:
    """The mean upward move per change, mean(max(0, change)); NaN when there are no changes."""
    return float(np.clip(changes, 0, None).mean()) if len(changes) else float("nan")


def trend_residual_sd(values: np.ndarray, degree: int = 1) -> float:
    """The SD of the residuals around a least-squares polynomial (a line by default) through `values`.

    degree + 1 parameters are fitted, so the SD has n - degree - 1 degrees of freedom (NaN without one): a
    straight line (a parabola, for degree 2), rising or falling, scores exactly zero, whatever its slope."""
    values = np.asarray(values, dtype=float)
    if len(values) < degree + 2:
        return float("nan")
    x = np.arange(len(values), dtype=float)
    residuals = values - np.polyval(np.polyfit(x, values, degree), x)
    return float(np.sqrt((residuals ** 2).sum() / (len(values) - degree - 1)))


def sample_sd(values: np.ndarray) -> float:
    """The sample SD (ddof 1) of `values`; NaN for fewer than two."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if len(values) >= 2 else float("nan")


def falls_below_best(acc: np.ndarray) -> np.ndarray:
    """Per epoch, how far the accuracy lies below the best accuracy so far (0 where it is a new best)."""
    return np.maximum.accumulate(acc) - acc


#: The fewest changes a pair's late window may hold (declared): with 4 changes a trend residual has 3 degrees of
#: freedom; a pair that cannot give them leaves its seed out of that test.
MIN_WINDOW = 4


def default_window(epochs: int) -> int:
    """The late window of one run on its own: the changes into the epochs e > E/2 (at least one)."""
    return max(1, epochs - max(1, epochs // 2))


def longer_window(epochs: int) -> int:
    """The window of the sensitivity check: half as long again as the default, at most every change of the run."""
    return max(1, min(epochs - 1, round(1.5 * default_window(epochs))))


def shorter_window(epochs: int) -> int:
    """The window of the sensitivity check: half the default (the last quarter of the run), at least one change."""
    return max(1, round(0.5 * default_window(epochs)))


#: The window rules, by the name `verdicts.Options.window` gives.
WINDOW_RULES = {"default": default_window, "longer": longer_window, "shorter": shorter_window}


def pair_window(epochs_a: int, epochs_b: int, rule: str = "default") -> int:
    """One seed's window for a pair of runs: the rule's window of the shorter run (0 when it has one epoch)."""
    if rule not in WINDOW_RULES:
        raise ConfigError("window", rule, f"one of {sorted(WINDOW_RULES)}")
    shortest = int(min(epochs_a, epochs_b))
    return WINDOW_RULES[rule](shortest) if shortest >= 2 else 0


def common_window(epochs: pd.Series | list[int], rule: str = "default") -> int:
    """One late window for a set of runs shown together: the window of the shortest (0 when a run has one epoch)."""
    shortest = int(min(epochs)) if len(epochs) else 0
    return pair_window(shortest, shortest, rule)


def early_mean(history: pd.DataFrame, epochs: int = EARLY_EPOCHS) -> float:
    """The mean validation accuracy over a run's first `epochs` epochs; NaN for a run that is shorter."""
    acc = history.sort_values("epoch")["val_acc"].to_numpy(dtype=float)
    return float(acc[:epochs].mean()) if len(acc) >= epochs else float("nan")


def stability_statistics(history: pd.DataFrame, window: int | None = None) -> dict[str, float]:
    """Every stability statistic (module docstring) of one run's history over its last `window` changes.

    With `window=None` the window is the run's second half (`default_window`); comparisons between models pass
    one window for all (`common_window`). Values are NaN when the run has fewer than two epochs."""
    window = default_window(len(history)) if window is None else window
    values = {column: late_values(history[column], window) for column in ("val_loss", "train_loss", "val_acc")}
    if len(values["val_loss"]) < 2:
        epoch_level = [name for name in names("stability") if STATISTICS[name].curve != "fine_val_loss"]
        return {**dict.fromkeys(epoch_level, float("nan")), "val_loss_tv": float("nan"),
                "stability_window": 0}
    acc, val_loss = values["val_acc"], values["val_loss"]
    tv_changes = late_changes(history["val_loss"], default_window(len(history)))
    return {"val_loss_rise": mean_rise(np.diff(val_loss)),
            "val_acc_drop": mean_rise(-np.diff(acc)),
            "val_acc_worst_drop": float(np.max(falls_below_best(acc))),
            "train_loss_rise": mean_rise(np.diff(values["train_loss"])),
            "val_loss_fluctuation": trend_residual_sd(val_loss),
            "train_loss_fluctuation": trend_residual_sd(values["train_loss"]),
            "val_loss_fluctuation_quadratic": trend_residual_sd(val_loss, degree=2),
            "val_loss_sd": sample_sd(val_loss),
            "val_loss_change_sd": sample_sd(np.diff(val_loss)),
            "val_acc_fluctuation": trend_residual_sd(acc),
            "val_loss_tv": float(np.abs(tv_changes).mean()),
            "stability_window": int(len(val_loss) - 1)}


def run_history(histories: pd.DataFrame, label: str, seed: int) -> pd.DataFrame:
    """One run's rows of a suite's histories (`suites.results.load_suite`), in epoch order."""
    return histories[(histories["label"] == label) & (histories["seed"] == seed)].sort_values("epoch")


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

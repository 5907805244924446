"""How quickly two matched arms reach one validation accuracy: a target both can be judged on, runs censored.

The paper's target (the baseline's best validation accuracy) is one that neither the NODE arms nor their
controls reach in our runs, which makes "converges quicker" undecidable. The target here is decidable by
construction and fixed before the arm being tested is looked at:

- **Reference**, per seed: the validation accuracy of the checkpoint both arms start from (the baseline's best,
  for arms continued from it), or, for heads trained from scratch side by side, the control's best.
- **Target** = reference - Δ, with Δ the smallest of 0.5, 1, 2, 5 points at which the *control* reaches the
  target in more than half of the paired seeds (the control's curves alone choose Δ).
- **Rising target** (declared for the confirmation, `claims.CONFIRMATIONS`): the plateau target above sits where
  first-passage epochs are noise, so "quicker" is also judged on the rising part of the curve: per seed, the
  validation accuracy halfway from the control's first epoch to its best, and, as the primary test, the mean
  validation accuracy over the first `statistics.EARLY_EPOCHS` epochs (the area under the rising curve).
- **Time**: the first epoch (and the seconds up to its end) at which validation accuracy reaches the target. A run
  that never does is **censored** at its budget (the epochs it ran), never dropped: a paired difference against
  a censored run understates the true one, so censoring makes a test conservative, not optimistic. "0 of N seeds
  reached the target" is itself a result, and is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
import pandas as pd

from .statistics import by_seed

#: The drops below the reference tried in turn (fractions: 0.005 is half a point).
LADDER = (0.005, 0.01, 0.02, 0.05)


@dataclass
class Target:
    """The per-seed target of a pair and how it was chosen."""

    values: pd.Series  # by seed
    drop: float  # Δ, as a fraction
    reference: str  # in words
    control_reached: int
    seeds: int


def start_label(runs: pd.DataFrame, label: str) -> str | None:
    """The configuration `label` continues from (its `init_from` run, without the seed suffix), or None."""
    if "init_from" not in runs:
        return None
    values = runs.loc[runs["label"] == label, "init_from"].dropna()
    if values.empty or not str(values.iloc[0]):
        return None
    return PurePath(str(values.iloc[0])).name.rsplit("-s", 1)[0]


def first_reach(history: pd.DataFrame, target: float) -> tuple[float, float, bool]:
    """(epochs, seconds, reached): the first epoch with val_acc >= target and the seconds up to its end, or the
    whole run (censored) when it never gets there."""
    history = history.sort_values("epoch")
    reached = np.flatnonzero(history["val_acc"].to_numpy(dtype=float) >= target)
    last = int(reached[0]) if len(reached) else len(history) - 1
    seconds = float(history["seconds"].iloc[: last + 1].sum()) if "seconds" in history else float("nan")
    return float(history["epoch"].iloc[last]), seconds, bool(len(reached))


def times_to_target(histories: pd.DataFrame, label: str, target: pd.Series) -> pd.DataFrame:
    """Per seed of `label` that has a target: epochs and seconds to it, and whether it was reached (else censored)."""
    rows = {}
    for seed, history in histories[histories["label"] == label].groupby("seed"):
        if seed in target.index:
            epochs, seconds, reached = first_reach(history, float(target[seed]))
            rows[seed] = {"epochs": epochs, "seconds": seconds, "reached": reached}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["epochs", "seconds", "reached"])


#: The share of the control's gain, from its first epoch to its best, that the rising target asks for.
RISING_SHARE = 0.5


def rising_target(histories: pd.DataFrame, control: str, seeds: list[int]) -> Target:
    """Per seed, the validation accuracy `RISING_SHARE` of the way from the control's first epoch to its best."""
    rows = histories[(histories["label"] == control) & histories["seed"].isin(seeds)].sort_values("epoch")
    first, best = rows.groupby("seed")["val_acc"].first(), rows.groupby("seed")["val_acc"].max()
    target = first + RISING_SHARE * (best - first)
    reached = int(times_to_target(histories, control, target)["reached"].sum())
    return Target(target, float("nan"), f"halfway from {control}'s first-epoch validation accuracy to its best",
                  reached, len(target))


def choose_target(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, seeds: list[int],
                  rising: bool = False) -> Target:
    """The target of the pair (a, b) over `seeds` (module docstring); b is the control. `rising`: the rising
    target instead of the plateau ladder."""
    if rising:
        return rising_target(histories, b, seeds)
    start = start_label(runs, b)
    reference = by_seed(runs, start, "val_acc") if start is not None and start == start_label(runs, a) else None
    if reference is not None and reference.index.isin(seeds).any():
        words = f"{start}'s best validation accuracy, the checkpoint both start from"
    else:
        control = histories[histories["label"] == b]
        reference = control.groupby("seed")["val_acc"].max()
        words = f"{b}'s best validation accuracy"
    reference = reference[reference.index.isin(seeds)]
    for drop in LADDER:
        target = reference - drop
        reached = int(times_to_target(histories, b, target)["reached"].sum())
        if reached > len(reference) / 2:
            break
    return Target(target, drop, words, reached, len(reference))


def describe_target(target: Target, a_times: pd.DataFrame, b_times: pd.DataFrame, a: str, b: str) -> str:
    """'target: ... - 0.5 points; reached by rk in 4/4 seeds, fc-adam 3/4 (...)' for a claim's note."""
    def reached(times: pd.DataFrame) -> str:
        return f"{int(times['reached'].sum())} of {len(times)}"

    seconds = ", ".join(f"{label} {times['seconds'].mean():.0f} s" for label, times in ((a, a_times), (b, b_times))
                        if len(times))
    below = "" if np.isnan(target.drop) else f" minus {target.drop * 100:g} points"
    return (f"target: {target.reference}{below}; reached by {a} in {reached(a_times)} "
            f"seeds, {b} in {reached(b_times)} (runs that never reach it count at their budget); mean time to the "
            f"target or the budget: {seconds}")

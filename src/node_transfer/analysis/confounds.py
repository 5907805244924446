"""What two arms of a comparison differ in besides the head: the checkpoint they start from, the optimizer and the
learning rate over the compared window. A primary test whose arms differ in any of these is demoted to exploratory
(`verdicts.endpoint_row`); the paper's own comparisons are labelled with what they mix in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .convergence import start_label
from .statistics import run_history

#: Recipe fields two arms must share, besides the starting checkpoint, for a comparison to isolate the head.
RECIPE = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "batch_size", "train_subset")


def _learning_rates(histories: pd.DataFrame, label: str, seed: int, window: int) -> np.ndarray:
    history = run_history(histories, label, seed)
    return history["lr"].to_numpy(dtype=float)[-window:] if window > 0 else np.array([])


def _show_rates(rates: np.ndarray) -> str:
    return f"{rates[0]:.2g}" if np.allclose(rates, rates[0]) else f"{rates[0]:.2g} → {rates[-1]:.2g}"


def confounds(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, seeds: list[int], window: int) -> str:
    """What a and b differ in besides the head, as a phrase ('' when they are matched): the checkpoint they start
    from, the optimizer, and the learning rate, read per epoch from history.csv's `lr` over the window where the
    statistic has one, else from the configuration."""
    found = []
    start_a, start_b = start_label(runs, a), start_label(runs, b)
    if start_a != start_b:
        origin = {label: start or "the pretrained weights" for label, start in ((a, start_a), (b, start_b))}
        found.append(f"{a} is {b} trained further" if start_a == b else
                     f"{a} starts from {origin[a]}, {b} from {origin[b]}")
    first = {label: runs[runs["label"] == label].iloc[0] for label in (a, b) if (runs["label"] == label).any()}
    if len(first) == 2 and first[a].get("optimizer") != first[b].get("optimizer"):
        found.append(f"optimizer {first[a]['optimizer']} vs {first[b]['optimizer']}")
    if window and seeds and "lr" in histories:
        rates = {label: _learning_rates(histories, label, seeds[0], window) for label in (a, b)}
        differ = any(not np.allclose(_learning_rates(histories, a, seed, window),
                                     _learning_rates(histories, b, seed, window)) for seed in seeds)
        if differ:
            found.append(f"learning rate in the window {a} {_show_rates(rates[a])}, {b} {_show_rates(rates[b])}")
    elif len(first) == 2 and any(str(first[a].get(f)) != str(first[b].get(f)) for f in RECIPE if f != "optimizer"):
        found.append("learning-rate recipe differs")
    return "; ".join(found)

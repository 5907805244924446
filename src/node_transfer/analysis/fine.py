"""Stability on fine curves: the validation-subset loss evaluated several times per epoch (`run.fine_curves`).

A fine-tune continuation of 4-8 epochs has too few epoch-level points for a fluctuation statistic; its fine curve
has eight per epoch. The window of a pair is the same rule in epochs as for epoch-level curves (the second half
of the shorter run, `statistics.WINDOW_RULES`), holding every fine point of those epochs; a pair with fewer than
`MIN_FINE_POINTS` points there leaves its seed out. `fine_val_loss_fluctuation` is the residual SD of those points
about their straight-line trend, as `val_loss_fluctuation` is of the epoch-level ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from .statistics import WINDOW_RULES, trend_residual_sd

#: The fewest fine validation points a pair's window may hold: two epochs at eight evaluations each.
MIN_FINE_POINTS = 16


def fine_points(fine: pd.DataFrame, label: str, seed: int) -> pd.DataFrame:
    """One run's fine rows that carry a validation-subset evaluation, in step order."""
    rows = fine[(fine["label"] == label) & (fine["seed"] == seed)]
    return rows[rows["val_loss"].notna()].sort_values("step")


def fine_window(curves: Iterable[pd.DataFrame], rule: str = "default") -> tuple[int, int]:
    """A pair's window in epochs, (first, last): its points are those of epochs first+1 .. last, the late part of
    the shorter run by `rule` (one seed's pair; both its tests and its figure read this)."""
    shortest = int(min(curve["epoch"].max() for curve in curves))
    return shortest - WINDOW_RULES[rule](shortest), shortest


def in_fine_window(curve: pd.DataFrame, window: tuple[int, int]) -> pd.DataFrame:
    """The rows of a fine curve inside a `fine_window`: epochs first+1 .. last."""
    first, last = window
    return curve[(curve["epoch"] > first) & (curve["epoch"] <= last)]


def fine_values(fine: pd.DataFrame, a: str, b: str, seeds: list[int], rule: str = "default"
                ) -> tuple[pd.Series, pd.Series, dict[int, int], list[int]]:
    """Per seed, the fine validation-loss fluctuation of a and of b over the pair's late epochs; the number of
    points each seed's window holds; the seeds left out (a run without fine curves, or too few points)."""
    values: dict[str, dict[int, float]] = {a: {}, b: {}}
    points, left_out = {}, []
    for seed in seeds:
        curves = {label: fine_points(fine, label, seed) for label in (a, b)}
        if any(curve.empty for curve in curves.values()):
            left_out.append(seed)
            continue
        window = fine_window(curves.values(), rule)
        windows = {label: in_fine_window(curve, window) for label, curve in curves.items()}
        count = min(len(window) for window in windows.values())
        if count < MIN_FINE_POINTS:
            left_out.append(seed)
            continue
        points[seed] = count
        for label, window in windows.items():
            values[label][seed] = trend_residual_sd(window["val_loss"].to_numpy(dtype=float))
    return pd.Series(values[a], dtype=float), pd.Series(values[b], dtype=float), points, left_out


def fine_loss_level(fine: pd.DataFrame, control: str, points: dict[int, int]) -> float:
    """The control's mean fine validation loss over each seed's window (the floor of a "holds")."""
    levels = [fine_points(fine, control, seed)["val_loss"].tail(count).mean() for seed, count in points.items()]
    return float(pd.Series(levels, dtype=float).mean()) if levels else 0.0

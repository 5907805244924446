"""Figures of runs and suites: training curves, sweeps, and accuracy against cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

CURVES = [("train_acc", "train accuracy"), ("train_loss", "train loss"), ("val_acc", "validation accuracy"),
          ("val_loss", "validation loss")]


def plot_curves(histories: pd.DataFrame, labels: list[str] | None = None, title: str = "") -> plt.Figure:
    """Train/validation accuracy and loss per epoch, one line per configuration, seeds as a min-max band."""
    labels = labels or list(dict.fromkeys(histories["label"]))
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (column, name) in zip(axes.flat, CURVES):
        for label in labels:
            stats = histories[histories["label"] == label].groupby("epoch")[column].agg(["mean", "min", "max"])
            line, = ax.plot(stats.index, stats["mean"], marker="o", ms=3, label=label)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(run_dir: str | Path) -> plt.Figure:
    """The curves of a single run directory."""
    history = pd.read_csv(Path(run_dir) / "history.csv").assign(label=Path(run_dir).name, seed=0)
    return plot_curves(history)


def plot_sweep(runs: pd.DataFrame, x: str, xlabel: str, log: bool = True) -> plt.Figure:
    """Test accuracy, forward/backward NFE and seconds per epoch against a swept parameter."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    grouped = runs.groupby(x)
    for ax, (columns, name) in zip(axes, [(["test_acc"], "test accuracy"), (["nfe_forward", "nfe_backward"],
                                                                               "NFE per batch"),
                                          (["seconds_per_epoch"], "seconds per epoch")]):
        for column in columns:
            stats = grouped[column].agg(["mean", "std"])
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                        label=column)
        ax.set_xscale("log" if log else "linear")
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if len(columns) > 1:
            ax.legend()
    fig.tight_layout()
    return fig


def plot_cost_accuracy(runs: pd.DataFrame, cost: str = "nfe_forward", xlabel: str = "forward NFE per batch"
                       ) -> plt.Figure:
    """Test accuracy against a cost column, one point per configuration (mean over seeds, std as error bars).

    Configurations are told apart by colour and marker in a legend beside the axes: labels written next to
    the points overlap where configurations cost and score alike."""
    stats = runs.groupby("label", sort=False)[[cost, "test_acc"]].agg(["mean", "std"]).fillna(0.0)
    fig, ax = plt.subplots(figsize=(8, 4))
    markers = "osD^vP*Xh<>p"
    for i, (label, row) in enumerate(stats.iterrows()):
        x, y = row[(cost, "mean")], row[("test_acc", "mean")] * 100
        ax.errorbar(x, y, xerr=row[(cost, "std")], yerr=row[("test_acc", "std")] * 100, capsize=3, label=label,
                    marker=markers[i % len(markers)], color=f"C{i % 10}", linestyle="none")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    return fig

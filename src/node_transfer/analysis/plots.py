"""Figures of runs and suites: training curves, sweeps, and accuracy against cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import pandas as pd

from ..core.rundir import read_history
from ..suites.registry import LARGE_STEP_RATES
from ..suites.spec import arm_and_rate
from .fine import fine_points, fine_window, in_fine_window
from .statistics import statistic

CURVES = [("train_acc", "train accuracy"), ("train_loss", "train loss"), ("val_acc", "validation accuracy"),
          ("val_loss", "validation loss")]
#: One colour and line style per arm across the book: a NODE arm solid, its matched control dashed in the same
#: colour (rk / fc-adam blue, adjoint / fc-sgd orange), the other controls dotted or dash-dotted, the baseline black.
ARM_STYLES = {"baseline": ("black", "-"), "rk": ("C0", "-"), "fc-adam": ("C0", "--"), "adjoint": ("C1", "-"),
              "fc-sgd": ("C1", "--"), "mlp": ("C2", ":"), "euler": ("C3", "-."), "rk-imagenet": ("C4", "-"),
              "node": ("C0", "-"), "node-adjoint": ("C1", "-"), "fc": ("0.45", "--")}
OTHER_STYLES = [(f"C{i}", style) for style in ("-", "--", ":") for i in range(5, 10)]
#: An arm at a larger learning rate (`spec.rate_label`): its arm's line style, one colour per rate, so a NODE arm
#: and its control at one rate share a colour, solid and dashed.
RATE_COLOURS = {lr: f"C{i}" for i, lr in enumerate(sorted({lr for rates in LARGE_STEP_RATES.values() for lr in rates}))}


def arm_style(label: str, index: int = 0) -> tuple[str, str]:
    """(colour, line style) of an arm: `ARM_STYLES`, an arm of it at a rate of `RATE_COLOURS`, or the next free style
    for an arm it does not name."""
    arm, lr = arm_and_rate(label)
    if label not in ARM_STYLES and arm in ARM_STYLES and lr in RATE_COLOURS:
        return RATE_COLOURS[lr], ARM_STYLES[arm][1]
    return ARM_STYLES.get(label, OTHER_STYLES[index % len(OTHER_STYLES)])


def plot_curves(histories: pd.DataFrame, labels: list[str] | None = None, title: str = "",
                xlabel: str = "epoch") -> plt.Figure:
    """Train/validation accuracy and loss per epoch, one line per configuration (its mean over seeds, the seeds'
    range as a band), and the validation loss again over the second half of the epochs, where the stability tests
    look (shaded in the full panel), on its own scale; the legend has a panel of its own."""
    labels = labels or list(dict.fromkeys(histories["label"]))
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    panels = dict(zip(("train_acc", "train_loss", "legend", "val_acc", "val_loss", "late"), axes.flat))
    last = int(histories[histories["label"].isin(labels)]["epoch"].max())
    start = last // 2 + 1  # the late half, as the tests' windows (`statistics.WINDOW_RULES`) take it
    for index, label in enumerate(labels):
        colour, style = arm_style(label, index)
        rows = histories[histories["label"] == label]
        for column, _ in CURVES + [("late", "")]:
            stats = rows.groupby("epoch")["val_loss" if column == "late" else column].agg(["mean", "min", "max"])
            if column == "late":
                stats = stats[stats.index >= start]
            ax = panels[column]
            ax.plot(stats.index, stats["mean"], color=colour, linestyle=style, marker="o", ms=2.5, label=label)
            ax.fill_between(stats.index, stats["min"], stats["max"], color=colour, alpha=0.15)
    panels["val_loss"].axvspan(start - 0.5, last + 0.5, color="0.9", zorder=0)
    for column, name in CURVES + [("late", f"validation loss, epochs {start}-{last} (zoomed)")]:
        ax = panels[column]
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, names = panels["train_acc"].get_legend_handles_labels()
    panels["legend"].legend(handles, names, loc="center", frameon=False, title=title or None)
    panels["legend"].axis("off")
    fig.tight_layout()
    return fig


def plot_fine_pairs(fine: pd.DataFrame, pairs: list[tuple[str, str]]) -> plt.Figure:
    """Per pair (a NODE arm, its control), the fine validation-loss curves (`fine.csv`: the validation subset several
    times an epoch) of every seed both have, a thin line each, the NODE arm solid and its control dashed; shaded, the
    late half of each seed's pair (`fine.fine_window`, where its fine stability test looks; one band when every seed's
    runs are equally long). The y axis spans the windows' points: the first epochs' larger losses run off the top."""
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.6), squeeze=False)
    for ax, (a, b) in zip(axes.flat, pairs):
        seeds = sorted(set(fine.loc[fine["label"] == a, "seed"]) & set(fine.loc[fine["label"] == b, "seed"]))
        curves = {(label, seed): fine_points(fine, label, seed) for label in (a, b) for seed in seeds}
        seeds = [seed for seed in seeds if not (curves[a, seed].empty or curves[b, seed].empty)]
        curves = {key: points for key, points in curves.items() if key[1] in seeds}
        windows = {seed: fine_window([curves[a, seed], curves[b, seed]]) for seed in seeds}
        for (label, seed), points in curves.items():
            colour, style = arm_style(label)
            batches = fine[(fine["label"] == label) & (fine["seed"] == seed)].groupby("epoch")["batch"].max()
            epochs = points["epoch"] - 1 + points["batch"] / points["epoch"].map(batches)
            ax.plot(epochs, points["val_loss"], color=colour, linestyle=style, linewidth=0.9, alpha=0.75,
                    label=label if seed == seeds[0] else None)
        for first, last in set(windows.values()):
            ax.axvspan(first, last, color="0.9", zorder=0)
        in_window = [in_fine_window(points, windows[seed])["val_loss"] for (_, seed), points in curves.items()]
        if in_window:
            low, high = pd.concat(in_window).agg(["min", "max"])
            ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
        ax.set_title(f"{a} vs {b} ({len(seeds)} seeds)", fontsize=10)
        ax.set_xlabel("epochs since the baseline checkpoint")
        ax.set_ylabel("validation-subset loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_history(run_dir: str | Path) -> plt.Figure:
    """The curves of a single run directory."""
    history = read_history(Path(run_dir)).assign(label=Path(run_dir).name, seed=0)
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


def plot_estimation(tests: pd.DataFrame, columns: int = 3, verdict_column: str = "verdict_holm") -> plt.Figure:
    """Per test (a row of `verdicts.family_table`, its `result` holding the per-seed differences): each seed's
    paired difference a - b as a point (labelled by seed), the mean with its 95% interval, zero, and the band of
    ± the minimum effect of interest (the equivalence margin), one panel per test, in display units."""
    rows = list(tests.iterrows())
    columns = max(1, min(columns, len(rows)))
    lines = max(1, -(-len(rows) // columns))
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for ax, (_, row) in zip(axes.flat, rows):
        result, s = row["result"], statistic(row["name"])
        scale = s.scale
        differences = result.differences * scale
        margin = (result.margin or 0.0) * scale
        ax.axhspan(-margin, margin, color="0.85", label="± minimum effect")
        ax.axhline(0.0, color="0.3", lw=0.8)
        x = [0.1 * ((i % 3) - 1) for i in range(len(differences))]
        ax.scatter(x, differences, color="C0", zorder=3, label="seeds")
        for xi, (seed, value) in zip(x, differences.items()):
            ax.annotate(f"s{seed}", (xi, value), textcoords="offset points", xytext=(6, -3), fontsize=7)
        if result.n >= 2:
            mean, low, high = result.mean_diff * scale, result.ci_low * scale, result.ci_high * scale
            ax.errorbar([0.5], [mean], yerr=[[mean - low], [high - mean]], fmt="D", color="C3", capsize=4,
                        label="mean, 95% CI")
        ax.set_xlim(-0.5, 1.0)
        ax.set_xticks([])
        ax.set_ylabel(f"{row['a']} − {row['b']}" + (f" ({s.unit})" if s.unit else ""))
        ax.set_title(f"{row['regime'].split(', ')[-1]}: {s.label}\n{row[verdict_column]}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_bench_tolerance(tolerance: pd.DataFrame) -> plt.Figure:
    """The tolerance benchmark: forward and adjoint-backward NFE (left) and ms per head-only step (right)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(tolerance["tol"], tolerance["nfe_forward_train"], "o-", label="forward NFE (last epoch)")
    ax1.plot(tolerance["tol"], tolerance["nfe_backward_adjoint"], "s--", label="backward NFE (adjoint)")
    ax1.set_ylabel("NFE per batch")
    ax2.plot(tolerance["tol"], tolerance["s_per_batch_direct"] * 1000, "o-", label="direct backprop")
    ax2.plot(tolerance["tol"], tolerance["s_per_batch_adjoint"] * 1000, "s--", label="adjoint")
    ax2.set_ylabel("ms per training step (head only)")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("rtol = atol (tighter to the right)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_bench_memory(memory: pd.DataFrame) -> plt.Figure:
    """The memory benchmark: the peak memory rise of one training step against forward NFE, per solver and mode."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (solver, mode), group in memory.groupby(["solver", "mode"]):
        ax.plot(group["nfe_forward"], group["peak_mb"], "o-" if mode == "direct" else "s--", label=f"{solver}, {mode}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("forward NFE")
    ax.set_ylabel("peak memory rise (MB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loop_throughput(loop: pd.DataFrame, ceiling: float) -> plt.Figure:
    """The loop benchmark: images per second of each training loop, and the step's float32 matmul ceiling."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(loop["loop"], loop["images_per_s"], color=["0.6", "C0", "C2", "0.6", "C0"][:len(loop)])
    ax.axvline(ceiling, color="C3", linestyle="--", label="training step at the float32 matmul ceiling")
    ax.set_xlabel("images per second (one thread)")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig

"""Tables and figures from run directories and suites: the paper's Tables I-III, curves, stability.

Stability, which the paper claims but does not measure, is defined here (per run, from history.csv):
- `val_loss_tv`: mean absolute epoch-to-epoch change of validation loss over the second half of training
  (the epochs e > E/2, each compared with e - 1). Lower is steadier.
- `val_acc_tv`: the same for validation accuracy.
Across seeds, each is reported as mean with a 95% t-interval, and the spread of test accuracy as its std.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from .errors import DataError

#: The paper's reported numbers (Tables I and II), for side-by-side comparison only.
PAPER = {
    "baseline": {"model": "EfficientNetB0 (+ FC)", "train": 0.987, "val": 0.845, "test": 0.81, "epochs": 200,
                 "hours": 4.5},
    "rk": {"model": "proposed, RK solver", "train": 0.985, "val": 0.847, "test": 0.81, "epochs": 100,
           "hours": 3.75},
    "adjoint": {"model": "proposed, adjoint", "train": 0.992, "val": 0.853, "test": 0.81, "epochs": 160,
                "hours": 3.25},
}
CURVES = [("train_acc", "train accuracy"), ("train_loss", "train loss"), ("val_acc", "validation accuracy"),
          ("val_loss", "validation loss")]


def second_half_total_variation(values: pd.Series) -> float:
    """Mean |x_e - x_{e-1}| over the epochs e > E/2 (NaN with fewer than 2 epochs)."""
    values = values.dropna().to_numpy(dtype=float)
    if len(values) < 2:
        return float("nan")
    start = max(1, len(values) // 2)
    return float(np.abs(np.diff(values)[start - 1:]).mean())


def stability_statistics(history: pd.DataFrame) -> dict[str, float]:
    """The per-run stability statistics (see module docstring)."""
    return {"val_loss_tv": second_half_total_variation(history["val_loss"]),
            "val_acc_tv": second_half_total_variation(history["val_acc"])}


def mean_ci(values: pd.Series, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, std, half-width of the t-interval, n) of the finite values."""
    from scipy import stats

    values = values.dropna().astype(float)
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
    return mean, std, half, n


def fmt(values: pd.Series, scale: float = 1.0, digits: int = 1, ci: bool = False) -> str:
    """'mean ± std' (or ± the 95% half-interval), scaled (100 for percentages); a lone run shows its value."""
    mean, std, half, n = mean_ci(values * scale)
    if n == 0:
        return "–"
    spread = half if ci else std
    return f"{mean:.{digits}f}" if n == 1 or math.isnan(spread) else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _ordered_groups(runs: pd.DataFrame):
    for label in dict.fromkeys(runs["label"]):
        yield label, runs[runs["label"] == label]


def paper_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables I (accuracy), II (time), III (solver parameters) and a stability table from a `paper` suite."""
    table1, table2, table3, table4 = [], [], [], []
    for label, group in _ordered_groups(runs):
        paper = PAPER.get(label, {})
        name = group["group"].iloc[0] if "group" in group and isinstance(group["group"].iloc[0], str) else label
        seeds = len(group)
        table1.append({"model": name, "seeds": seeds, "train %": fmt(group["train_acc"], 100),
                       "validation %": fmt(group["val_acc"], 100), "test %": fmt(group["test_acc"], 100),
                       "paper train/val/test %": "/".join(f"{paper[k] * 100:.1f}" for k in ("train", "val", "test"))
                       if paper else "–"})
        table2.append({"model": name, "epochs": fmt(group["epochs"], digits=0),
                       "time (s)": fmt(group["seconds"], digits=1),
                       "s / epoch": fmt(group["seconds_per_epoch"], digits=2),
                       "NFE fwd / batch": fmt(group["nfe_forward"], digits=1),
                       "NFE bwd / batch": fmt(group["nfe_backward"], digits=1),
                       "paper epochs, time": f"{paper['epochs']}, {paper['hours']} h" if paper else "–"})
        first = group.iloc[0]
        is_node = first["head"] == "node"
        table3.append({"model": name, "solver": first["solver"] if is_node else "–",
                       "gradients": ("adjoint" if first["adjoint"] else "backprop") if is_node else "–",
                       "absolute tolerance": f"{first['atol']:g}" if is_node else "–",
                       "relative tolerance": f"{first['rtol']:g}" if is_node else "–",
                       "optimizer": f"{first['optimizer']} (lr {first['lr']:g})"})
        table4.append({"model": name, "seeds": seeds, "val loss TV (95% CI)": fmt(group["val_loss_tv"], digits=4,
                                                                                  ci=True),
                       "val acc TV, % (95% CI)": fmt(group["val_acc_tv"], 100, digits=2, ci=True),
                       "test acc std across seeds, %": f"{group['test_acc'].std(ddof=1) * 100:.2f}"
                       if seeds > 1 else "–"})
    return {"Table I: accuracy": pd.DataFrame(table1), "Table II: time": pd.DataFrame(table2),
            "Table III: solver parameters": pd.DataFrame(table3), "Stability": pd.DataFrame(table4)}


def sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of a sweep: accuracy, NFE, time and stability, seeds as mean ± std."""
    rows = []
    for label, group in _ordered_groups(runs):
        first = group.iloc[0]
        fixed_step = pd.notna(first.get("step_size"))  # rtol/atol do not act on a fixed-step solver
        rows.append({"configuration": label, "solver": first.get("solver", ""),
                     "rtol": "–" if fixed_step else first.get("rtol"),
                     "step": first.get("step_size") if fixed_step else "adaptive", "seeds": len(group),
                     "test %": fmt(group["test_acc"], 100),
                     "val %": fmt(group["val_acc"], 100), "NFE fwd": fmt(group["nfe_forward"]),
                     "NFE bwd": fmt(group["nfe_backward"]), "s / epoch": fmt(group["seconds_per_epoch"], digits=2),
                     "val loss TV": fmt(group["val_loss_tv"], digits=4)})
    return pd.DataFrame(rows)


def load_histories(suite_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """All history.csv rows of a suite, tagged with label and seed."""
    frames = []
    for _, row in runs.iterrows():
        history = pd.read_csv(suite_dir / row["run_dir"] / "history.csv")
        frames.append(history.assign(label=row["label"], seed=row["seed"]))
    return pd.concat(frames, ignore_index=True)


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
    """Test accuracy against a cost column, one point per configuration (mean over seeds, std as error bars)."""
    stats = runs.groupby("label", sort=False)[[cost, "test_acc"]].agg(["mean", "std"]).fillna(0.0)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, row in stats.iterrows():
        x, y = row[(cost, "mean")], row[("test_acc", "mean")] * 100
        ax.errorbar(x, y, xerr=row[(cost, "std")], yerr=row[("test_acc", "std")] * 100, marker="o", capsize=3)
        ax.annotate(label, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(suite_dir: str | Path, out: str | Path | None = None) -> Path:
    """Tables (Markdown + CSV) and figures (PNG) for a suite directory."""
    from .rundir import read_json
    from .suites import collect_runs

    suite_dir = Path(suite_dir)
    meta = read_json(suite_dir / "suite.json", "suite description")
    out = Path(out) if out else suite_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(suite_dir)
    if runs.empty:
        raise DataError(f"no finished runs (metrics.json) under {suite_dir}")
    refresh_runs_csv(suite_dir, runs)
    tables = paper_tables(runs) if meta["suite"] == "paper" else {"Results": sweep_table(runs)}
    lines = [f"# {meta['suite']} suite, profile {meta['profile']}, {meta['seeds']} seed(s)\n"]
    for title, table in tables.items():
        stem = title.split(":")[0].lower().replace(" ", "-")
        table.to_csv(out / f"{stem}.csv", index=False)
        lines += [f"## {title}\n", table.to_markdown(index=False), ""]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    histories = load_histories(suite_dir, runs)
    if meta["suite"] == "paper":
        for label in dict.fromkeys(runs["label"]):
            fig = plot_curves(histories, [label], title=label)
            fig.savefig(out / f"curves-{label}.png", dpi=110)
            plt.close(fig)
    fig = plot_curves(histories, title=f"{meta['suite']} suite")
    fig.savefig(out / "curves-all.png", dpi=110)
    plt.close(fig)
    if meta["suite"] == "tolerance":
        fig = plot_sweep(runs, "rtol", "rtol = atol")
        fig.savefig(out / "tolerance.png", dpi=110)
        plt.close(fig)
    if meta["suite"] != "paper":
        fig = plot_cost_accuracy(runs)
        fig.savefig(out / "cost-accuracy.png", dpi=110)
        plt.close(fig)
    return out


def refresh_runs_csv(suite_dir: Path, runs: pd.DataFrame) -> bool:
    """Write `runs.csv` again from the run directories when it is missing, unreadable or lists other runs."""
    path = suite_dir / "runs.csv"
    try:
        listed = set(pd.read_csv(path)["run_dir"])
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        listed = None
    if listed == set(runs["run_dir"]):
        return False
    runs.to_csv(path, index=False)
    print(f"{path} was missing, unreadable or out of date: written again from the run directories", file=sys.stderr)
    return True


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Curves (PNG) and a metrics table (Markdown) for a single run directory."""
    from .rundir import HISTORY, METRICS

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "report"
    metrics = metrics_frame(run_dir)
    try:
        fig = plot_history(run_dir)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise DataError(f"{str(run_dir / HISTORY)!r} is missing or unreadable ({exc})") from None
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    (out / "tables.md").write_text(f"# {run_dir.name}\n\n{metrics.to_markdown()}\n\n(from {METRICS})\n")
    return out


def main_report(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise DataError(f"{str(directory)!r} is not a suite or run directory")
    single = not (directory / "suite.json").exists() and (directory / "metrics.json").exists()
    out = write_run_report(directory, args.out) if single else write_report(directory, args.out)
    print((out / "tables.md").read_text())
    print(out)
    return 0


def metrics_frame(run_dir: str | Path) -> pd.DataFrame:
    """metrics.json of a run as a one-column table (index: metric name)."""
    from .rundir import read_json

    metrics = read_json(Path(run_dir) / "metrics.json", "run metrics")
    return pd.DataFrame({"value": pd.Series(metrics, dtype=object)})


def compare_groups(runs: pd.DataFrame, column: str, a: str, b: str) -> dict[str, object]:
    """Mean and 95% t-interval of `column` for labels a and b, and a verdict read off the intervals.

    The verdict is 'lower'/'higher' (a against b) only when the intervals do not overlap, else
    'indistinguishable'; with one seed per label no interval exists and the verdict says so.
    """
    stats = {}
    for label in (a, b):
        mean, _, half, n = mean_ci(runs.loc[runs["label"] == label, column])
        stats[label] = (mean, half, n)
    (mean_a, half_a, n_a), (mean_b, half_b, n_b) = stats[a], stats[b]
    if n_a < 2 or n_b < 2 or math.isnan(half_a) or math.isnan(half_b):
        verdict = "not testable with one seed"
    elif mean_a + half_a < mean_b - half_b:
        verdict = "lower"
    elif mean_a - half_a > mean_b + half_b:
        verdict = "higher"
    else:
        verdict = "indistinguishable"
    return {"mean_a": mean_a, "ci_a": half_a, "n_a": n_a, "mean_b": mean_b, "ci_b": half_b, "n_b": n_b,
            "verdict": verdict}


def against_reference(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each configuration against a reference one: accuracy, NFE and time ratios, and issue 8's target.

    The two verdict columns (test accuracy, stability) compare 95% intervals over seeds (`compare_groups`).

    The target: test accuracy at least the reference's minus one std across its seeds, with at least 2x
    fewer forward NFE and at least 1.5x less time per epoch (head-only runs: the epoch time is the head's).
    """
    means = runs.groupby("label", sort=False)[["test_acc", "nfe_forward", "nfe_backward", "seconds_per_epoch",
                                                "val_loss_tv"]].mean()
    stds = runs.groupby("label", sort=False)["test_acc"].std(ddof=1)
    ref = means.loc[reference]
    table = pd.DataFrame({
        "test %": [fmt(runs.loc[runs["label"] == label, "test_acc"], 100) for label in means.index],
        "NFE fwd": means["nfe_forward"].round(1), "NFE bwd": means["nfe_backward"].round(1),
        "NFE fwd reduction": (ref["nfe_forward"] / means["nfe_forward"]).round(2),
        "s / epoch": means["seconds_per_epoch"].round(3),
        "speed-up per epoch": (ref["seconds_per_epoch"] / means["seconds_per_epoch"]).round(2),
        "val loss TV": means["val_loss_tv"].round(4),
    }, index=means.index)
    floor = ref["test_acc"] - (stds.loc[reference] if not math.isnan(stds.loc[reference]) else 0.0)
    table["meets target"] = ((means["test_acc"] >= floor) & (table["NFE fwd reduction"] >= 2.0)
                             & (table["speed-up per epoch"] >= 1.5))
    table.loc[reference, "meets target"] = False
    for column, name in (("test_acc", "test acc vs ref"), ("val_loss_tv", "val loss TV vs ref")):
        table[name] = [compare_groups(runs, column, label, reference)["verdict"] if label != reference else "–"
                       for label in means.index]
    return table.rename_axis("configuration").reset_index()


def stability_verdicts(runs: pd.DataFrame, models: tuple[str, ...] = ("rk", "adjoint"),
                       reference: str = "baseline") -> pd.DataFrame:
    """Each NODE model against the baseline on stability (val_loss_tv) and test accuracy, 95% intervals."""
    rows = []
    for model in models:
        for column in ("val_loss_tv", "test_acc"):
            result = compare_groups(runs, column, model, reference)
            rows.append({"NODE model": model, "statistic": column, "NODE mean": result["mean_a"],
                         "NODE 95% CI ±": result["ci_a"], f"{reference} mean": result["mean_b"],
                         f"{reference} 95% CI ±": result["ci_b"], f"NODE vs {reference}": result["verdict"]})
    return pd.DataFrame(rows)


def paper_claims(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's claims, each next to what the `paper` suite's runs measured and a verdict computed from them."""
    means = runs.groupby("label")[["test_acc", "seconds_per_epoch", "epochs", "params_head", "val_loss_tv"]].mean()

    def verdict(column: str, a: str, b: str) -> str:
        return f"{a} vs {b}: {compare_groups(runs, column, a, b)['verdict']}"

    def per_model(column: str, scale: float = 1.0, digits: int = 1) -> str:
        return ", ".join(f"{label} {means.loc[label, column] * scale:.{digits}f}" for label in PAPER)

    cost = means["seconds_per_epoch"] / means.loc["baseline", "seconds_per_epoch"]
    dearer = [label for label in ("rk", "adjoint") if cost[label] > 1.0]
    heads = means["params_head"]
    return pd.DataFrame([
        {"paper's claim": "the three models reach the same test accuracy",
         "measured": "test %: " + per_model("test_acc", 100),
         "verdict": "; ".join(verdict("test_acc", m, "baseline") for m in ("rk", "adjoint"))},
        {"paper's claim": "NODE models need fewer epochs and less time",
         "measured": "epochs run: " + per_model("epochs", digits=0) + "; seconds per epoch relative to the "
                     "baseline: " + ", ".join(f"{m} {cost[m]:.2f}x" for m in ("rk", "adjoint")),
         "verdict": "fewer epochs by construction (they start from the trained baseline); an epoch costs more "
                    f"for: {', '.join(dearer) or 'none'}"},
        {"paper's claim": "the NODE head makes training more stable",
         "measured": "val loss TV: " + per_model("val_loss_tv", digits=3),
         "verdict": "; ".join(verdict("val_loss_tv", m, "baseline") for m in ("rk", "adjoint"))},
        {"paper's claim": "the adjoint variant is the most stable",
         "measured": "val loss TV: " + per_model("val_loss_tv", digits=3),
         "verdict": verdict("val_loss_tv", "adjoint", "rk")},
        {"paper's claim": "a NODE may reduce the parameter count",
         "measured": f"head parameters: FC {heads['baseline']:.0f}, NODE {heads['rk']:.0f}",
         "verdict": f"the NODE head has {heads['rk'] - heads['baseline']:+.0f} parameters against the FC head"},
    ])


def load_bench(directory: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """The tables (NAME.csv) and summaries (NAME.json) that the bench/ scripts wrote into `directory`."""
    directory = Path(directory)
    tables = {path.stem: pd.read_csv(path) for path in sorted(directory.glob("*.csv"))}
    summaries = {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
    if not summaries:
        raise FileNotFoundError(f"no benchmark results under {directory}: run `make bench` first")
    return tables, summaries


def bench_overview(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per benchmark: its headline number against its target, run time and the machine's load."""
    return pd.DataFrame([{
        "benchmark": name, "measured": s["headline"], "value": s["value"], "target": s["target"], "met": s["pass"],
        "minutes": round(s["seconds"] / 60, 1), "load average at start": s["machine"]["load_average_at_start"][0],
        "load average at end": s["machine"]["load_average_at_end"][0]} for name, s in summaries.items()])

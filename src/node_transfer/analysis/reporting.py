"""Tables and reports from run directories and suites: the paper's Tables I-III, stability, sweeps, claims.

The figures live in `plots`, the statistics and their registry in `statistics`, paired tests in `paired`, the
declared tests in `claims`, their verdicts in `verdicts` and `findings`, a suite's files in `suites.results`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..core.atomic import atomic_write_text
from ..core.errors import DataError
from ..core.rundir import CONFIG, HISTORY, METRICS, read_json
from ..core.suitedir import (
    ALL_CURVES,
    COST_ACCURACY,
    ESTIMATION,
    REPORT_DIR,
    RUN_CURVES,
    RUNS_TABLE,
    TABLES,
    TOLERANCE,
    curves_name,
    read_runs_table,
    read_suite_meta,
    save_figure,
    table_name,
    write_csv,
    write_runs_table,
)
from ..suites.registry import suite_of
from ..suites.results import load_histories
from .dispersion import senses_table
from .findings import claims_frame, sensitivity_table, sibling_regimes, study_table
from .paper import PAPER
from .plots import plot_cost_accuracy, plot_curves, plot_estimation, plot_history, plot_sweep
from .statistics import mean_ci, statistic

__all__ = ["PAPER", "paper_tables", "sweep_table", "write_report", "write_run_report", "show_table", "metrics_frame"]


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
                       "time (s), as recorded": fmt(group["seconds"], digits=1),
                       "s / epoch, as recorded": fmt(group["seconds_per_epoch"], digits=2),
                       "NFE fwd / batch": fmt(group["nfe_forward"], digits=1),
                       "NFE bwd / batch": fmt(group["nfe_backward"], digits=1),
                       "head params": _params(group),
                       "paper epochs, time": f"{paper['epochs']}, {paper['hours']} h" if paper else "–"})
        first = group.iloc[0]
        is_node = first["head"] == "node"
        table3.append({"model": name, "solver": first["solver"] if is_node else "–",
                       "gradients": ("adjoint" if first["adjoint"] else "backprop") if is_node else "–",
                       "absolute tolerance": f"{first['atol']:g}" if is_node else "–",
                       "relative tolerance": f"{first['rtol']:g}" if is_node else "–",
                       "optimizer": f"{first['optimizer']} (lr {first['lr']:g})"})
        table4.append({"model": name, "seeds": seeds, **_stability_cells(group),
                       "test NLL": fmt(group["test_nll"], digits=3) if "test_nll" in group else "–",
                       "test ECE, %": fmt(group["test_ece"], 100, digits=2) if "test_ece" in group else "–",
                       "test acc std across seeds, %": f"{group['test_acc'].std(ddof=1) * 100:.2f}"
                       if seeds > 1 else "–"})
    return {"Table I: accuracy": pd.DataFrame(table1), "Table II: time": pd.DataFrame(table2),
            "Table III: solver parameters": pd.DataFrame(table3), "Stability": pd.DataFrame(table4)}


def _stability_cells(group: pd.DataFrame) -> dict[str, str]:
    """Every stability statistic of the registry as 'mean ± 95% half-interval' (each run over its own second half)."""
    cells = {}
    for name in ("val_loss_fluctuation", "train_loss_fluctuation", "val_loss_rise", "train_loss_rise",
                 "val_acc_drop", "val_acc_worst_drop"):
        s = statistic(name)
        unit = ", %" if s.scale == 100 else ""
        cells[f"{s.label}{unit} (95% CI)"] = fmt(group[name], s.scale, s.digits, ci=True) if name in group else "–"
    return cells


def sweep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of a sweep: accuracy, NFE, time and stability, seeds as mean ± std."""
    rows = []
    for label, group in _ordered_groups(runs):
        first = group.iloc[0]
        fixed_step = pd.notna(first.get("step_size"))  # rtol/atol do not act on a fixed-step solver
        ode = first.get("head", "node") == "node"  # a head without an ODE has no solver
        rows.append({"configuration": label, "solver": first.get("solver", "") if ode else "–",
                     "rtol": "–" if fixed_step or not ode else first.get("rtol"),
                     "step": "–" if not ode else first.get("step_size") if fixed_step else "adaptive",
                     "seeds": len(group),
                     "test %": fmt(group["test_acc"], 100),
                     "val %": fmt(group["val_acc"], 100), "NFE fwd": fmt(group["nfe_forward"]),
                     "NFE bwd": fmt(group["nfe_backward"]), "s / epoch": fmt(group["seconds_per_epoch"], digits=2),
                     "head params": _params(group),
                     "val-loss rise": fmt(group["val_loss_rise"], digits=4),
                     "test NLL": fmt(group["test_nll"], digits=3) if "test_nll" in group else "–",
                     "test ECE %": fmt(group["test_ece"], 100, digits=2) if "test_ece" in group else "–"})
    return pd.DataFrame(rows)


def _params(group: pd.DataFrame) -> str:
    """The head's parameter count (the same for every seed of a configuration)."""
    return f"{int(group['params_head'].iloc[0]):,}" if "params_head" in group else "–"


#: The columns of the claims table that `tables.md` shows (claims.csv has them all).
CLAIM_COLUMNS = ["claim", "test", "role", "measured", "verdict", "verdict_holm", "p_holm", "confound", "note"]


def write_report(suite_dir: str | Path, out: str | Path | None = None) -> Path:
    """Tables (Markdown + CSV) and figures (PNG) for a suite directory."""
    from ..suites.runner import collect_runs

    suite_dir = Path(suite_dir)
    meta = read_suite_meta(suite_dir)
    out = Path(out) if out else suite_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    runs = collect_runs(suite_dir)
    if runs.empty:
        raise DataError(f"no finished runs ({METRICS}) under {suite_dir}")
    refresh_runs_csv(suite_dir, runs)
    histories = load_histories(suite_dir, runs)
    suite = suite_of(meta["suite"])
    tables = TABLE_KINDS[suite.tables](runs)
    lines = [f"# {meta['suite']} suite, profile {meta['profile']}, {meta['seeds']} seed(s)\n"]
    study = sibling_regimes(suite_dir, meta["suite"], meta["profile"])
    own = [regime for regime in study if regime.directory == suite_dir.name] or \
        [regime for regime in study if (regime.suite, regime.profile) == (meta["suite"], meta["profile"])]
    if own:
        table = study_table(study)
        mine = table[table["regime"] == own[0].title]
        senses = senses_table({own[0]: study[own[0]]}, suite_dirs={own[0]: suite_dir})
        tables["Claims: paired tests"] = claims_frame(mine, senses)
        sensitivity = sensitivity_table(study).reset_index()
        tables["Sensitivity: primary tests"] = sensitivity[sensitivity["primary test"].str.startswith(own[0].title)]
        lines.append(f"Holm's correction runs over the {int((table['role'] == 'primary').sum())} primary tests of "
                     f"{', '.join(regime.title for regime in study)}.\n")
        primary = mine[mine["role"] == "primary"]
        if len(primary):
            draw(plot_estimation(primary), out / ESTIMATION)
    for title, table in tables.items():
        stem = title.split(":")[0].lower().replace(" ", "-")
        write_csv(table, out / table_name(stem), float_format="%.6g")
        shown = table[CLAIM_COLUMNS] if stem == "claims" else table
        lines += [f"## {title}\n", shown.to_markdown(index=False), ""]
    atomic_write_text("\n".join(lines) + "\n", out / TABLES)
    draw(plot_curves(histories, title=f"{meta['suite']} suite"), out / ALL_CURVES)
    for name in suite.figures:
        FIGURES[name](runs, histories, out)
    return out


def draw(fig: plt.Figure, path: Path) -> None:
    save_figure(fig, path)
    plt.close(fig)


def _curves_per_arm(runs: pd.DataFrame, histories: pd.DataFrame, out: Path) -> None:
    for label in dict.fromkeys(runs["label"]):
        draw(plot_curves(histories, [label], title=label), out / curves_name(label))


#: The tables a suite's report opens with, by `registry.Suite.tables`: the paper's models side by side (Tables I-III
#: and stability), or one row per configuration.
TABLE_KINDS: dict[str, Callable[[pd.DataFrame], dict[str, pd.DataFrame]]] = {
    "paper": lambda runs: paper_tables(runs), "sweep": lambda runs: {"Results": sweep_table(runs)}}
#: The figures a suite's report draws beside every arm's curves, by `registry.Suite.figures`: (runs, histories,
#: report folder) -> the figure written there.
FIGURES: dict[str, Callable[[pd.DataFrame, pd.DataFrame, Path], None]] = {
    "curves-per-arm": _curves_per_arm,
    "tolerance": lambda runs, histories, out: draw(plot_sweep(runs[runs["head"] == "node"], "rtol", "rtol = atol"),
                                                   out / TOLERANCE),
    "cost-accuracy": lambda runs, histories, out: draw(plot_cost_accuracy(runs), out / COST_ACCURACY),
}


def refresh_runs_csv(suite_dir: Path, runs: pd.DataFrame) -> bool:
    """Write `runs.csv` again from the run directories when it is missing, unreadable, lists other runs or lacks a
    column they now give (a statistic added to the registry)."""
    path = suite_dir / RUNS_TABLE
    try:
        listed = read_runs_table(suite_dir)
        current = set(listed["run_dir"]) == set(runs["run_dir"]) and set(runs.columns) <= set(listed.columns)
    except (OSError, ValueError, KeyError, pd.errors.ParserError):
        current = False
    if current:
        return False
    write_runs_table(runs, suite_dir)
    print(f"{path} was missing, unreadable or out of date: written again from the run directories", file=sys.stderr)
    return True


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Curves (`curves.png`) and the metrics table (`tables.md`) of a single run directory."""
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / REPORT_DIR
    metrics = metrics_frame(run_dir)
    try:
        fig = plot_history(run_dir)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise DataError(f"{str(run_dir / HISTORY)!r} is missing or unreadable ({exc})") from None
    config = read_json(run_dir / CONFIG, "run configuration") if (run_dir / CONFIG).is_file() else {}
    described = ", ".join(f"{k} {config[k]}" for k in ("dataset", "image_size", "backbone", "head", "solver", "seed")
                          if k in config and (k != "solver" or config.get("head") == "node"))
    out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out / RUN_CURVES)
    plt.close(fig)
    atomic_write_text(f"# {run_dir.name}\n\n{described}\n\n{metrics.to_markdown()}\n\n(from {METRICS})\n", out / TABLES)
    return out


class Table:
    """A table for a page: no row numbers (an unnamed integer index), short cells kept on one line.

    Any other index (metric names, configurations) is shown. Cells of at most `nowrap` characters get
    non-breaking spaces, so that "97.2 ± 0.4" never wraps into three lines while prose cells still wrap."""

    def __init__(self, frame: pd.DataFrame, nowrap: int = 24) -> None:
        self.frame, self.nowrap = frame, nowrap

    def _index(self) -> bool:
        index = self.frame.index
        return not (index.name is None and index.nlevels == 1 and pd.api.types.is_integer_dtype(index))

    def _repr_html_(self) -> str:
        def keep(value):
            return value.replace(" ", "\u00a0") if isinstance(value, str) and len(value) <= self.nowrap else value

        frame = self.frame.copy()
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].map(keep)
        return frame.to_html(index=self._index(), border=0)

    def __repr__(self) -> str:
        return self.frame.to_string(index=self._index())


def show_table(frame: pd.DataFrame | pd.Series) -> Table:
    """How the book shows a table: row numbers hidden, names in the index kept (see `Table`)."""
    return Table(frame.to_frame() if isinstance(frame, pd.Series) else frame)


def metrics_frame(run_dir: str | Path) -> pd.DataFrame:
    """metrics.json of a run as a one-column table (index: metric name)."""
    metrics = read_json(Path(run_dir) / METRICS, "run metrics")
    return pd.DataFrame({"value": pd.Series(metrics, dtype=object)})

"""The answer as a picture: a forest plot of the primary tests, each difference in units of its minimum effect.

One row per primary test (a NODE arm against its matched control), oriented so that right is "NODE better"
(a lower fluctuation, a higher early accuracy), with its 95 % interval (uncorrected, as the table says), coloured by
its Holm-corrected label; the band of ±1 minimum effect is where an accuracy difference counts as "the same" and
below which a stability gain cannot hold. The paper's own (confounded) comparisons on the same statistics are
drawn in grey beneath their regime's tests.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..analysis.findings import declared_study
from ..analysis.statistics import statistic
from .first_screen import regime_short

#: One colour per label, the same wherever the book colours labels.
LABEL_COLOURS = {"holds": "#1b7837", "does not hold": "#b2182b", "undecided": "#4d6fa3", "not shown": "#e08214"}
PAPER_COLOUR = "0.65"


def label_colour(label: str) -> str:
    """The colour of a label ('lower, equivalence not shown' takes the 'not shown' colour)."""
    return LABEL_COLOURS["not shown"] if "not shown" in label else LABEL_COLOURS.get(label, "0.3")


def forest_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The primary tests and the paper's own comparisons on their statistics, in units of the minimum effect and
    oriented so that positive means the NODE arm is better: `advantage`, `low`, `high`."""
    primary = table[table["role"] == "primary"]
    paper = table[(table["role"] == "paper") & table["name"].isin(set(primary["name"]))
                  & table["regime"].isin(set(primary["regime"]))]
    rows = pd.concat([primary, paper]).copy()
    sign = np.where([statistic(name).higher_is_better for name in rows["name"]], 1.0, -1.0)
    unit = rows["minimum_effect"].astype(float).replace(0.0, np.nan)
    rows["advantage"] = sign * rows["difference"].astype(float) / unit
    ends = np.sort(np.stack([sign * rows["ci_low"].astype(float) / unit, sign * rows["ci_high"].astype(float) / unit]),
                   axis=0)
    rows["low"], rows["high"] = ends[0], ends[1]
    rows["shown_label"] = np.where(rows["role"] == "primary", rows["verdict_holm"], "paper's comparison (confounded)")
    order = {regime: i for i, regime in enumerate(dict.fromkeys(primary["regime"]))}
    rows["order"] = rows["regime"].map(order) * 10 + (rows["role"] == "paper") + rows["claim"].astype(float) / 100
    return rows.sort_values(["order"], kind="stable").reset_index(drop=True)


def answer_figure(results: str | Path) -> plt.Figure:
    """The forest plot of the study the book answers first, from the committed results."""
    return plot_forest(declared_study(str(results))[1])


def plot_forest(table: pd.DataFrame) -> plt.Figure:
    """The forest plot of a study's tests table (`findings.study_table`)."""
    rows = forest_rows(table)
    fig, ax = plt.subplots(figsize=(8.4, 0.36 * len(rows) + 1.8))
    y = np.arange(len(rows))[::-1]
    ax.axvspan(-1, 1, color="0.92", zorder=0)
    ax.axvline(0, color="0.3", lw=0.8)
    for yi, (_, row) in zip(y, rows.iterrows()):
        paper = row["role"] == "paper"
        colour = PAPER_COLOUR if paper else label_colour(row["verdict_holm"])
        ax.plot([row["low"], row["high"]], [yi, yi], color=colour, lw=2, solid_capstyle="butt")
        ax.plot([row["advantage"]], [yi], "o" if not paper else "s", color=colour, ms=6)
    names = [f"{row['a']} − {row['b']}, {regime_short(row['regime'])}: {statistic(row['name']).label}"
             + (" (paper)" if row["role"] == "paper" else "") for _, row in rows.iterrows()]
    ax.set_yticks(y, names, fontsize=8)
    for tick, (_, row) in zip(ax.get_yticklabels(), rows.iterrows()):
        tick.set_color("0.45" if row["role"] == "paper" else "black")
    limit = float(np.nanmax(np.abs(rows[["low", "high"]].to_numpy()))) * 1.05
    ax.set_xlim(-max(limit, 1.5), max(limit, 1.5))
    ax.set_xlabel("difference in units of the test's minimum effect (95 % interval, uncorrected)")
    ax.annotate("NODE better →", xy=(1.0, 1.0), xycoords="axes fraction", ha="right", va="bottom", fontsize=9)
    ax.annotate("← control better", xy=(0.0, 1.0), xycoords="axes fraction", ha="left", va="bottom", fontsize=9)
    handles = [plt.Line2D([], [], color=colour, marker="o", lw=2, label=label)
               for label, colour in LABEL_COLOURS.items() if rows["verdict_holm"].map(label_colour).eq(colour).any()]
    handles.append(plt.Line2D([], [], color=PAPER_COLOUR, marker="s", lw=2, label="paper's own (confounded)"))
    handles.append(plt.Rectangle((0, 0), 1, 1, color="0.92", label="±1 minimum effect"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.9 / (0.36 * len(rows) + 1.8)),
              ncol=3, frameon=False)
    regimes = rows["regime"].to_numpy()
    for yi, before, after in zip(y[1:], regimes[:-1], regimes[1:]):
        if before != after:
            ax.axhline(yi + 0.5, color="0.75", lw=0.6)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig

"""Does a trained NODE head behave as an ODE? The solver-swap check (`run.solver_swap`) read from the runs.

Every run made since the check exists evaluated its head on the test set with its training solver and with the
reference solver (dopri5 at rtol = atol = 1e-7); `metrics.json` holds both accuracies. Per regime and arm: how
many runs have the check, the mean and the largest change of test accuracy, and whether every run stayed within
`claims.SOLVER_SWAP_TOLERANCE` (a head whose accuracy moves further is a discretisation, not an ODE: Ott et al.
2021).
"""

from __future__ import annotations

import pandas as pd

from .claims import SOLVER_SWAP_TOLERANCE, Regime

COLUMN = "solver_swap_change"


def solver_swap_table(data: dict[Regime, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """One row per regime and arm whose runs recorded the check (an empty frame while none has)."""
    rows = []
    for regime, (runs, _) in data.items():
        if COLUMN not in runs:
            continue
        checked = runs[runs[COLUMN].notna()]
        for label, group in checked.groupby("label", sort=False):
            change = group[COLUMN].astype(float) * 100
            rows.append({"regime": regime.title, "arm": label, "solver": group["solver"].iloc[0], "runs": len(group),
                         "mean change (points)": round(float(change.mean()), 2),
                         "largest change (points)": round(float(change.abs().max()), 2),
                         "behaves as an ODE": "yes" if (change.abs() <= SOLVER_SWAP_TOLERANCE * 100).all() else "no"})
    return pd.DataFrame(rows)


def solver_swap_sentence(data: dict[Regime, tuple[pd.DataFrame, pd.DataFrame]]) -> str:
    """The check in words for the reproducing chapter."""
    table = solver_swap_table(data)
    tolerance = f"{SOLVER_SWAP_TOLERANCE * 100:g} points"
    if table.empty:
        return (f"No committed run records the solver-swap check yet: every NODE run made from now on evaluates its "
                f"head with its training solver and with dopri5 at 1e-7, and a head whose test accuracy moves by "
                f"more than {tolerance} is reported as not behaving as an ODE.")
    failing = table[table["behaves as an ODE"] == "no"]
    verdict = ("every arm stayed within it" if failing.empty else
               f"not an ODE by this check: {', '.join(failing['arm'] + ' (' + failing['regime'] + ')')}")
    return (f"{int(table['runs'].sum())} NODE runs record the solver-swap check (tolerance {tolerance}); "
            f"{verdict}.")

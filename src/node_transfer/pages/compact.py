"""Tables a reader scans: declared tests, one row each, as test | difference [95 % interval] | seeds | label | label
after Holm (stability differences also in % of the control's level). The results chapters show these first and the
full test tables (every statistic, effect size, confound, note) collapsed beneath.
"""

from __future__ import annotations

import pandas as pd

from ..analysis.claims import Regime
from ..analysis.endpoints import Endpoint
from .first_screen import interval_text, percent_text


def compact_tests(table: pd.DataFrame, endpoints: tuple[tuple[str, Endpoint], ...]) -> pd.DataFrame:
    """Declared tests as a reader scans them: the test, its difference with the 95 % interval (stability also in %
    of the control's level), paired seeds, and its label before and after Holm's correction; a test without a
    paired seed yet says so. `endpoints` are (regime title, test) pairs; the regime is a column when several are."""
    found = {(row["regime"], row["a"], row["b"], row["name"]): row for _, row in table.iterrows()} if len(table) else {}
    rows = []
    for regime, endpoint in endpoints:
        row = found.get((regime, endpoint.a, endpoint.b, endpoint.statistic))
        paired = row is not None and row["n"] >= 1
        rows.append({
            "regime": regime, "test": endpoint.wording(),
            "difference [95 % interval]": interval_text(row) + (f" ({percent_text(row)})" if percent_text(row) else "")
            if paired else "no paired seed yet",
            "seeds": int(row["n"]) if paired else 0,
            "label": (row["verdict"] or "–") if paired else "–",
            "label after Holm": (row["verdict_holm"] or "–") if paired else "–",
        })
    frame = pd.DataFrame(rows)
    return frame if frame["regime"].nunique() > 1 else frame.drop(columns="regime")


def regime_compact(table: pd.DataFrame, regime: Regime) -> pd.DataFrame:
    """One regime's primary tests, compactly (`compact_tests`), from a study's tests table."""
    rows = table[(table["regime"] == regime.title) & (table["role"] == "primary")] if len(table) else table
    return compact_tests(rows, tuple((regime.title, test) for test in regime.primary()))

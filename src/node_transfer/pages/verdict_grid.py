"""The answer across regimes: one row per claim, one column per regime (the answer study's, then those of the
studies where a NODE could help, `extensions.EXTENSIONS`), each cell the labels of that claim's primary tests there,
after Holm's correction within the regime's own study. A regime whose runs are not in says so; one whose declared runs
are partly in calls its labels interim and says how many are in.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis.claims import ANSWER_STUDY, STUDIES
from ..analysis.findings import declared_study, primary
from ..analysis.paper import PAPER_CLAIMS
from .extensions import EXTENSIONS, declaration_of
from .first_screen import regime_short

#: How a cell writes a label (the long ones shortened; the intro defines every label in full).
SHORT_LABELS = {"lower, equivalence not shown": "lower, not shown",
                "higher, equivalence not shown": "higher, not shown"}


def _cell(tests: pd.DataFrame) -> str:
    """'rk: holds; adjoint: undecided' for the primary tests of one claim in one regime."""
    parts = []
    for _, row in tests.iterrows():
        label = SHORT_LABELS.get(row["verdict_holm"], row["verdict_holm"]) if row["n"] >= 2 else "too few seeds yet"
        parts.append(f"{row['a']}: {label}")
    return "; ".join(parts)


def interim_note(runs: pd.DataFrame, labels: set[str], seeds: tuple[int, ...]) -> str:
    """' (interim: 12 of 30 runs)' while a declared study's primary runs are partly in, '' once all are."""
    planned = len(labels) * len(seeds)
    finished = int((runs["label"].isin(labels) & runs["seed"].isin(seeds)).sum())
    return f" (interim: {finished} of {planned} runs)" if finished < planned else ""


def verdict_grid(results: str | Path) -> pd.DataFrame:
    """Claims (rows) × regimes (columns): the Holm-corrected labels of each claim's primary tests in each regime."""
    columns: dict[str, dict[str, str]] = {}
    for key in (ANSWER_STUDY, *EXTENSIONS):
        data, table = declared_study(str(results), key)
        tests = primary(table) if len(table) else table
        for regime in STUDIES[key].regimes:
            column = regime_short(regime.title)
            declared = {test.claim for test in regime.primary()}
            declared_runs = key in EXTENSIONS and regime in data  # a declared study's, counted against its plan
            interim = interim_note(data[regime][0], set(regime.primary_arms()), declaration_of(key).seeds) \
                if declared_runs else ""
            cells = {}
            for number in declared:
                rows = tests[(tests["regime"] == regime.title) & (tests["claim"] == number)] if len(tests) else tests
                found = regime in data and len(rows)
                cells[f"{number}. {PAPER_CLAIMS[number].title}"] = _cell(rows) + interim if found else "runs not in yet"
            columns[column] = cells
    claims = [f"{n}. {c.title}" for n, c in PAPER_CLAIMS.items()
              if any(f"{n}. {c.title}" in cells for cells in columns.values())]
    grid = pd.DataFrame(columns, index=claims).fillna("no primary test")
    return grid.rename_axis("claim").reset_index()

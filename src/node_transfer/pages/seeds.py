"""The study's seeds: which each regime has and what machine made them (`seed_table`, `seeds_by_configuration`),
which its suites planned and have not finished (`not_finished`), and where the seed plans stand (`seeds_range`,
`adjoint_seed_plan`)."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.claims import ADJOINT_SEEDS_CAP, Regime
from ..analysis.findings import StudyData, primary
from ..analysis.paired import MOST_SEEDS_PLANNED
from ..suites.results import suite_progress


def seeds_range(low: float, high: float) -> str:
    """A planned-seeds range as the tables show it ('–' where there is nothing to plan)."""
    if not np.isfinite(low):
        return f"more than {MOST_SEEDS_PLANNED}" if low == np.inf else "–"
    upper = f"more than {MOST_SEEDS_PLANNED}" if high == np.inf else f"{high:.0f}"
    return f"{low:.0f}" if low == high else f"{low:.0f} to {upper}"


def cpu_name(recorded: str) -> str:
    """A recorded CPU model without its trademark marks ("Intel(R) Xeon(R) Processor" reads "Intel Xeon")."""
    return re.sub(r"\((R|TM)\)| Processor| CPU(?= |$)", "", recorded)


def seed_table(data: StudyData) -> pd.DataFrame:
    """Per regime and configuration: the seeds finished and the CPU models their runs recorded."""
    rows = []
    for regime, (runs, _) in data.items():
        for label, group in runs.groupby("label", sort=False):
            cpus = group["cpu"].fillna("not recorded").value_counts()
            rows.append({"regime": regime.title, "configuration": label,
                         "seeds": spans(group["seed"].tolist()),
                         "CPU model (runs)": "; ".join(f"{cpu_name(cpu)} ({n})" for cpu, n in cpus.items())})
    return pd.DataFrame(rows)


def adjoint_seed_plan(table: pd.DataFrame, regime: Regime) -> str:
    """Where the fine-tune adjoint - fc-sgd accuracy test stands against its seed plan (`ADJOINT_SEEDS_CAP`):
    'decided (holds) at 8 paired seeds' or 'still undecided at 10 paired seeds, the cap'."""
    rows = primary(table)
    row = rows[(rows["regime"] == regime.title) & (rows["a"] == "adjoint") & (rows["b"] == "fc-sgd")
               & (rows["name"] == "test_acc")]
    if row.empty:
        return "not computed yet"
    label, n = row["verdict_holm"].iloc[0], int(row["n"].iloc[0])
    if label != "undecided":
        return f"decided ({label}) at {n} paired seeds"
    if n >= ADJOINT_SEEDS_CAP:
        return f"still undecided at {n} paired seeds, the cap"
    return f"undecided at {n} paired seeds, short of the cap of {ADJOINT_SEEDS_CAP}"


def spans(seeds: Collection[int]) -> str:
    """Seeds as runs of consecutive numbers: [1, 2, 8, 9, 10] -> '1, 2, 8-10'."""
    runs: list[list[int]] = []
    for seed in sorted(seeds):
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def seed_spans(seeds: Collection[int]) -> str:
    """Seeds as a phrase: [1, 2, 8, 9, 10] -> 'seeds 1, 2, 8-10', [3] -> 'seed 3'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {spans(seeds)}"


def seeds_by_configuration(runs: pd.DataFrame, seeds: set[int]) -> str:
    """Which of `seeds` each configuration has, configurations with the same seeds together:
    'baseline, rk, adjoint: seeds 3-12; adjoint-libtol: seeds 3-7'."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for label, group in runs.groupby("label", sort=False):
        have = tuple(sorted(set(group["seed"]) & seeds))
        if have:
            groups.setdefault(have, []).append(label)
    return "; ".join(f"{', '.join(labels)}: {seed_spans(have)}" for have, labels in groups.items()) or "none"


def not_finished(results: str | Path, data: StudyData) -> str:
    """The configurations of the study's suites with seeds planned but not finished, those missing the same seeds
    together: 'fc-adam, mlp (seeds 2, 8-12), node-sgd-backprop (seeds 1, 2)'."""
    missing: dict[tuple[int, ...], list[str]] = {}
    for regime in data:
        progress = suite_progress(Path(results) / regime.directory)
        runs = data[regime][0]
        for label, planned in zip(progress["configuration"], progress["seeds planned"]):
            done = set(runs.loc[runs["label"] == label, "seed"])
            seeds = tuple(seed for seed in range(planned) if seed not in done)
            if seeds:
                missing.setdefault(seeds, []).append(label)
    return ", ".join(f"{', '.join(labels)} ({seed_spans(seeds)})" for seeds, labels in missing.items()) \
        or "nothing"

"""The study's answer: its declared tests computed on the committed runs, checked for robustness, and put in words.

`load_study` reads a study's regimes (`claims.STUDIES`) from `results/`; `study_table` computes every declared test
with Holm over the primary ones; `sensitivity_table` recomputes the primary family under each check of
`SCENARIOS` and flags the verdicts that flip. `answer` puts the result in words.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..core.rundir import machine_of
from ..core.suitedir import has_suite_meta, read_suite_meta
from ..suites.results import load_suite
from .claims import ANSWER_STUDY, Regime, study, study_of
from .verdicts import DECLARED, Options, family_table, seeds_on_one_cpu_model, with_planned_seeds

StudyData = dict[Regime, tuple[pd.DataFrame, pd.DataFrame]]


def load_regimes(paths: dict[Regime, Path]) -> StudyData:
    """Each regime whose directory has finished runs: its runs (with the CPU model and capability each recorded,
    `cpu`) and histories."""
    data = {}
    for regime, path in paths.items():
        runs, histories = load_suite(path)
        if len(runs):
            runs["cpu"] = [machine_of(path / run_dir) for run_dir in runs["run_dir"]]
            data[regime] = (runs, histories)
    return data


def load_study(results: str | Path, key: str = ANSWER_STUDY) -> StudyData:
    """A study's regimes, read from their directories under `results` (the committed `results/`)."""
    return load_regimes({regime: Path(results) / regime.directory for regime in study(key).regimes})


def sibling_regimes(suite_dir: str | Path, suite: str, profile: str) -> StudyData:
    """The study a suite directory belongs to (by its suite and profile), with the study's other regimes read
    from directories beside it where they hold the right suite: what `node-transfer report` computes Holm over."""
    found = study_of(suite, profile)
    if found is None:
        return {}
    suite_dir = Path(suite_dir)
    paths = {}
    for regime in found[0].regimes:
        path = suite_dir if regime == found[1] else suite_dir.parent / regime.directory
        meta = read_suite_meta(path) if has_suite_meta(path) else {}
        if (meta.get("suite"), meta.get("profile")) == (regime.suite, regime.profile):
            paths[regime] = path
    return load_regimes(paths)


def _fluctuation_swap(name: str, instead: str) -> Options:
    return replace(DECLARED, name=name, swap=(("val_loss_fluctuation", instead),))


#: The checks of the sensitivity table, each changing one thing about how the primary family is computed (what a
#: reviewer tries: other statistics, windows, margins, tests, corrections and seed sets); `leave_one_out` adds
#: one scenario per seed.
SCENARIOS = (
    DECLARED,
    replace(DECLARED, name="other statistic", swap_statistic=True),
    _fluctuation_swap("quadratic trend", "val_loss_fluctuation_quadratic"),
    _fluctuation_swap("plain SD of the window", "val_loss_sd"),
    _fluctuation_swap("SD of the changes", "val_loss_change_sd"),
    _fluctuation_swap("val-acc fluctuation", "val_acc_fluctuation"),
    _fluctuation_swap("train-loss fluctuation", "train_loss_fluctuation"),
    replace(DECLARED, name="window x1.5", window="longer"),
    replace(DECLARED, name="window x1/2", window="shorter"),
    replace(DECLARED, name="margin x0.6", margin_scale=0.6),
    replace(DECLARED, name="margin x2", margin_scale=2.0),
    replace(DECLARED, name="Wilcoxon", method="wilcoxon"),
    replace(DECLARED, name="Benjamini-Hochberg", correction="bh"),
    replace(DECLARED, name="early-stopped seeds dropped", drop_early_stopped=True),
    replace(DECLARED, name="one CPU model per seed", seed_filter=seeds_on_one_cpu_model),
    replace(DECLARED, name="seeds without a recorded CPU kept", regime_seed_rules=False),
    replace(DECLARED, name="confirmation seeds pooled in", pool_confirmations=True),
)


def leave_one_out(data: StudyData) -> tuple[Options, ...]:
    """One scenario per seed of the study's runs: every test computed without that seed."""
    seeds = sorted({int(seed) for runs, _ in data.values() for seed in runs["seed"]})
    return tuple(replace(DECLARED, name=f"without seed {seed}",
                         seed_filter=lambda runs, left=seed: set(runs["seed"].astype(int)) - {left}) for seed in seeds)


def study_table(data: StudyData, options: Options = DECLARED) -> pd.DataFrame:
    """Every declared test of the study's regimes, Holm applied over the primary ones, with the seeds each
    undecided primary test would need."""
    return with_planned_seeds(family_table(data, options))


@lru_cache(maxsize=4)
def declared_study(results: str, key: str = ANSWER_STUDY) -> tuple[StudyData, pd.DataFrame]:
    """A study's runs and its tests table as declared, read once per kernel (the intro's facts and its figure share
    them); callers must not change the frames."""
    data = load_study(results, key)
    return data, study_table(data)


def primary(table: pd.DataFrame) -> pd.DataFrame:
    """The primary tests of a table."""
    return table[table["role"] == "primary"]


#: How `claims.csv` names each role, and the order of its columns.
ROLE_NAMES = {"primary": "primary", "paper": "exploratory: the paper's comparison (confounded)",
              "exploratory": "exploratory"}
CLAIM_CSV_COLUMNS = ["regime", "claim", "test", "role", "verdict_holm", "p_holm", "verdict", "measured", "difference",
                     "ci_low", "ci_high", "unit", "difference_pct", "ci_low_pct", "ci_high_pct", "minimum_effect",
                     "minimum_effect_pct", "holds_floor", "effect_size", "correlation", "p_value", "p_holds",
                     "p_fails", "n", "seeds", "seeds_low", "seeds_high", "a_better_in", "window", "windows", "mean_a",
                     "mean_b", "a", "b", "against", "name", "statistic", "reached_a", "reached_b", "confound", "note"]


def claims_frame(table: pd.DataFrame, senses: pd.DataFrame | None = None) -> pd.DataFrame:
    """A tests table as written to `claims.csv`: roles spelt out, the Holm-corrected label first, no in-memory
    comparison objects; `senses` (`dispersion.senses_table`) adds the spread and divergence rows."""
    if senses is not None and len(senses):
        table = pd.concat([table, senses], ignore_index=True)
    frame = table.assign(role=table["role"].map(ROLE_NAMES))
    return frame[[c for c in CLAIM_CSV_COLUMNS if c in frame]].reset_index(drop=True)


def sensitivity_table(data: StudyData, scenarios: tuple[Options, ...] | None = None) -> pd.DataFrame:
    """Each primary test's Holm-corrected verdict under each scenario (the first is the declared analysis; by
    default `SCENARIOS` and `leave_one_out`), and the scenarios under which it flips."""
    scenarios = scenarios if scenarios is not None else SCENARIOS + leave_one_out(data)
    columns = {}
    for options in scenarios:
        table = primary(family_table(data, options, primary_only=True))  # labels only: no seed planning
        columns[options.name] = pd.Series(table["verdict_holm"].to_numpy(), index=table["regime"] + ": " +
                                          table["test"].str.replace(r" \(.*\)$", "", regex=True))
    frame = pd.DataFrame(columns)
    declared = frame[scenarios[0].name]
    frame["flips under"] = [", ".join(name for name in frame.columns[1:] if row[name] != declared[test]) or "none"
                            for test, row in frame.iterrows()]
    return frame.rename_axis("primary test")

"""Declare, then run: a confirmatory family is judged only by rules committed before its runs started.

A confirmation (`claims.CONFIRMATIONS`) is dated by git: the commit that first added its key to `claims.py`
(`declaring_commit`). Every run it judges records when it started (`config.json`'s `started_at`, UTC), and
`runs_not_after` lists those that started before the declaration or cannot show when they started: the check
fails on any. `confirmation_table` computes the family on the declared seeds only, Holm over its own tests.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..core.rundir import recorded_start
from ..core.suitedir import run_dir_name
from .claims import ANSWER_STUDY, CONFIRMATIONS, STUDIES, Confirmation, Regime
from .findings import StudyData, declared_study, load_regimes
from .verdicts import DECLARED, Options, family_table

#: The file whose history dates a declaration.
DECLARING_FILE = Path(__file__).with_name("claims.py")


def declaring_commit(confirmation: Confirmation, repository: Path | None = None) -> tuple[str, datetime] | None:
    """(hash, commit time) of the first commit that added the confirmation's key to `claims.py`; None when git or
    the history cannot tell (a copy without `.git`, a shallow clone, or a declaration not committed yet)."""
    root = repository or DECLARING_FILE.parents[3]
    try:
        log = subprocess.run(["git", "-C", str(root), "log", "--reverse", "--format=%H %cI", f"-S{confirmation.key}",
                              "--", str(DECLARING_FILE.relative_to(root))],
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return (log[0], datetime.fromisoformat(log[1])) if len(log) >= 2 else None


def started_at(run_dir: Path) -> datetime | None:
    """When a run was first started (`rundir.recorded_start`), or None for a run that cannot show it."""
    value = recorded_start(run_dir)
    return datetime.fromisoformat(value) if value else None


def regime_of(confirmation: Confirmation) -> Regime:
    """The declared regime of a confirmation."""
    return next(regime for s in STUDIES.values() for regime in s.regimes if regime.key == confirmation.regime)


def confirmatory_runs(suite_dir: Path, runs: pd.DataFrame, confirmation: Confirmation) -> pd.DataFrame:
    """The runs of the declared seeds, with when each started (`started_at`, NaT when unrecorded)."""
    chosen = runs[runs["seed"].isin(confirmation.seeds)].copy()
    chosen["started_at"] = [started_at(Path(suite_dir) / run_dir) for run_dir in chosen["run_dir"]]
    return chosen


def runs_not_after(runs: pd.DataFrame, declared: datetime | None) -> list[str]:
    """The runs ('rk-s5') that started before the declaration, or cannot show when they started; every run when
    the declaration itself has no date."""
    return [run_dir_name(row["label"], int(row["seed"])) for _, row in runs.iterrows()
            if declared is None or row["started_at"] is None or pd.isna(row["started_at"])
            or row["started_at"] <= declared]


def confirmation_options(confirmation: Confirmation, options: Options = DECLARED) -> Options:
    """The declared analysis restricted to the confirmation's seeds (the regime's exploratory-seed rule set aside)."""
    seeds = set(confirmation.seeds)
    given = options.seed_filter
    rule = (lambda runs: seeds) if given is None else (lambda runs: given(runs) & seeds)
    return replace(options, seed_filter=rule, pool_confirmations=True)


def confirmation_status(results: str | Path, confirmation: Confirmation) -> dict:
    """Where a confirmation stands: its declaring commit, the runs of its seeds finished against those planned,
    the runs that cannot count (started before the declaration or undated), and its family table."""
    regime = regime_of(confirmation)
    suite_dir = Path(results) / regime.directory
    runs, histories = load_regimes({regime: suite_dir}).get(regime, (pd.DataFrame(), pd.DataFrame()))
    labels = set(regime.primary_arms())
    chosen = confirmatory_runs(suite_dir, runs[runs["label"].isin(labels)], confirmation) if len(runs) else \
        pd.DataFrame()
    commit = declaring_commit(confirmation)
    data = {regime: (runs, histories)} if len(runs) else {}
    table = confirmation_table(data, confirmation) if len(chosen) else pd.DataFrame()
    return {"commit": commit[0][:7] if commit else "not found", "declared": commit[1] if commit else None,
            "planned": len(labels) * len(confirmation.seeds), "finished": len(chosen),
            "early": runs_not_after(chosen, commit[1] if commit else None) if len(chosen) else [], "table": table}


def confirmation_table(data: StudyData, confirmation: Confirmation, options: Options = DECLARED) -> pd.DataFrame:
    """The confirmatory family: the regime's declared tests on the declared seeds only, Holm over its primary
    tests alone (an empty frame while the regime has no runs)."""
    regime = regime_of(confirmation)
    if regime not in data:
        return pd.DataFrame()
    return family_table({regime: data[regime]}, confirmation_options(confirmation, options))


def against_exploratory(results: str | Path, confirmation: Confirmation, tests: pd.DataFrame) -> str:
    """Which readings of the exploratory seeds the confirmation repeated, and the labels with every seed pooled (both
    from the study's primary family, Holm over all its tests, as the answer reads them)."""
    title = regime_of(confirmation).title
    data, table = declared_study(str(results))

    def labels(frame: pd.DataFrame) -> dict[tuple[str, str, str], str]:
        rows = frame[(frame["regime"] == title) & (frame["role"] == "primary")]
        return {(a, b, name): label for a, b, name, label in zip(rows["a"], rows["b"], rows["name"],
                                                                   rows["verdict_holm"])}

    exploratory = labels(table)
    rows = table[(table["regime"] == title) & (table["role"] == "primary")]
    measured = {(a, b, name): text.split("; ", 1)[-1].split(", d_z")[0]
                for a, b, name, text in zip(rows["a"], rows["b"], rows["name"], rows["measured"])}
    pooled = labels(family_table(data, replace(DECLARED, pool_confirmations=True)))
    keys = list(zip(tests["a"], tests["b"], tests["name"]))

    def reading(key: tuple[str, str, str], label: str) -> str:
        before = exploratory.get(key, "not tested")
        there = f", {measured[key]} there" if key in measured else ""
        if before in ("undecided", "not tested"):
            return f"nothing to confirm: {before} on the exploratory seeds{there}"
        return f"{'confirmed' if before == label else 'not confirmed'}: {before} on the exploratory seeds{there}"

    repeated = [f"{test} ({reading(key, label)})"
                for test, key, label in zip(tests["test"], keys, tests["verdict_holm"])]
    return (f"Against the exploratory seeds: {'; '.join(repeated)}. Pooled, every seed: "
            + "; ".join(f"{test}: **{pooled.get(key, 'not tested')}**" for test, key in zip(tests["test"], keys)))


def declaration_sentence(confirmation: Confirmation, status: dict) -> str:
    """'declared in commit `4214869` (2026-12-07 03:15 UTC): RULES. 12 of its 30 runs are in: until all are, its
    labels are interim readings, not its verdicts' (`confirmation_status`), and the runs that cannot count, if any."""
    when = f"{status['declared']:%Y-%m-%d %H:%M} UTC" if status["declared"] else "a date git cannot show here"
    text = (f"declared in commit `{status['commit']}` ({when}): {confirmation.rules}. {status['finished']} of its "
            f"{status['planned']} runs are in")
    if 0 < status["finished"] < status["planned"]:
        text += ": until all are, its labels are interim readings, not its verdicts"
    if status["early"]:
        text += f"; {len(status['early'])} cannot count, started before the declaration: {', '.join(status['early'])}"
    return text


def confirmation_markdown(results: str | Path, study: str = ANSWER_STUDY) -> str:
    """Each confirmation declared for a study's regimes, in words for the reproducing chapter: what was declared and
    when, how many of its runs are in, and its family's labels once there are paired seeds (kept apart from the
    exploratory seeds). The new studies' declarations are read by `extensions`."""
    regimes = {regime.key for regime in STUDIES[study].regimes}
    parts = []
    for confirmation in (c for c in CONFIRMATIONS.values() if c.regime in regimes):
        status = confirmation_status(results, confirmation)
        text = f"**{confirmation.key}**, {declaration_sentence(confirmation, status)}"
        table = status["table"]
        tests = table[table["role"] == "primary"] if len(table) else table
        if len(tests) and (tests["n"] >= 2).any():
            text += ". Its family, Holm over its own tests: " + "; ".join(
                f"{row['test']}: {row['measured'].split('; ', 1)[-1]} (**{row['verdict_holm']}**)"
                for _, row in tests.iterrows())
            text += ". " + against_exploratory(results, confirmation, tests)
        elif len(tests):
            text += ", fewer than two paired seeds per test: no test can be judged yet"
        parts.append(text + ".")
    return "\n\n".join(parts)

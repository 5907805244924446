"""The answer's first screen, as the intro and the README give it: one row per claim of the paper (what it said,
what the matched-control tests found, how sure), every arm named once, and the paper's own comparisons.

Stability differences are shown in % of the control's level; a label beside an uncorrected 95 % interval is the
Holm-corrected one, and where Holm changed it the uncorrected reading follows in words (`before_holm`).
"""

from __future__ import annotations

import re

import pandas as pd

from ..analysis.findings import StudyData
from ..analysis.paper import PAPER, PAPER_CLAIMS
from ..analysis.statistics import statistic


def interval_text(row: pd.Series, unit: bool = True) -> str:
    """'-0.04 [-0.21, +0.12] points' in the statistic's display units (without them: `unit` False); one paired
    seed has no interval."""
    unit = f" {row['unit']}" if row["unit"] and unit else ""
    digits = statistic(row["name"]).digits
    if not row["n"] >= 2:
        return f"{row['difference']:+.{digits}f}{unit} (one seed, no interval)"
    return f"{row['difference']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]{unit}"


def target_reach(data: StudyData) -> dict[tuple[str, str], str]:
    """Per configuration given a target by its suite (the paper's: the baseline's best validation accuracy), how
    many of its runs reached it within their budget: {(regime title, 'rk'): '0 of 5', ...}."""
    reach = {}
    for regime, (runs, histories) in data.items():
        if "target_val_acc" not in runs:
            continue
        best = histories.groupby(["label", "seed"])["val_acc"].max()
        for label, group in runs[runs["target_val_acc"].notna()].groupby("label", sort=False):
            hit = sum(best[(label, seed)] >= target for seed, target in zip(group["seed"], group["target_val_acc"]))
            reach[(regime.title, label)] = f"{hit} of {len(group)}"
    return reach


def claim_tests(table: pd.DataFrame, number: int) -> tuple[pd.DataFrame, bool, list[str], pd.DataFrame]:
    """The tests that answer one claim: the matched-control rows (primary; where a claim has none, the first
    exploratory statistic of each kind for each matched pair), whether they are Holm-corrected, their statistics
    in order, and the paper's own (confounded) rows on those statistics."""
    rows = table[table["claim"] == number]
    matched = rows[rows["role"] == "primary"]
    corrected = not matched.empty
    if not corrected:
        kinds = rows["name"].map(lambda name: statistic(name).kind)
        matched = rows[rows["role"] == "exploratory"].assign(kind_=kinds).drop_duplicates(["regime", "a", "b", "kind_"])
    names = list(dict.fromkeys(matched["name"]))
    return matched, corrected, names, rows[(rows["role"] == "paper") & rows["name"].isin(names)]


def regime_short(regime: str) -> str:
    """'fine-tune' for 'Fashion-MNIST, fine-tune'."""
    return regime.split(", ")[-1]


def percent_text(row: pd.Series, control: bool = True) -> str:
    """'+19 % [+5 %, +33 %] of fc-adam's' for a stability row with a control level ('' otherwise); without the
    control's name where a heading already says whose level it is."""
    if not pd.notna(row.get("difference_pct")):
        return ""
    interval = (f" [{_pct(row['ci_low_pct'])}, {_pct(row['ci_high_pct'])}]" if pd.notna(row.get("ci_low_pct"))
                else "")
    whose = "the baseline's" if row["b"] == "baseline" else f"{row['b']}'s"
    return f"{_pct(row['difference_pct'])}{interval}" + (f" of {whose}" if control else "")


def _pct(value: float) -> str:
    """'+19 %', '-0.3 %' (one decimal below one per cent, so a small difference does not read as '-0 %')."""
    return f"{value:+.1f} %" if abs(value) < 1 else f"{value:+.0f} %"


def before_holm(row: pd.Series) -> str:
    """How the uncorrected label reads where Holm's differs: 'lower in 9 of 10 seeds before Holm's correction'."""
    raw, corrected = row["verdict"], row.get("verdict_holm", "")
    if not corrected or raw == corrected:
        return ""
    if "not shown" in raw:
        n, better = int(row["n"]), int(row["a_better_in"])
        higher_is_better = statistic(row["name"]).higher_is_better
        side = raw.split(",")[0]
        count = better if (side == "higher") == higher_is_better else n - better
        raw = f"{side} in {count} of {n} seeds"
    return f"{raw} before Holm's correction"


def finding(row: pd.Series) -> str:
    """One matched-control test for the claims table: pair, regime, difference and interval (stability in % of the
    control; units in the row's heading), its label after Holm, and the uncorrected label where it differs."""
    shown = percent_text(row, control=False) or interval_text(row, unit=False)
    label = row["verdict_holm"] or row["verdict"]
    raw = before_holm(row)
    return (f"{row['a']} − {row['b']}, {regime_short(row['regime'])}: {shown}, **{label}**"
            + (f" ({raw})" if raw else ""))


def heading(row: pd.Series) -> str:
    """'test accuracy (points)', 'val-loss fluctuation (% of the control's)': a row's statistic and its unit."""
    unit = "% of the control's" if pd.notna(row.get("difference_pct")) else row["unit"]
    return f"{row['statistic']}{f' ({unit})' if unit else ''}"


def claims_table(table: pd.DataFrame) -> str:
    """The answer as a Markdown table, one row per claim: what the paper said, what the matched-control tests found
    on the claim's main statistic, and how sure (seeds, intervals, correction)."""
    family = int((table["role"] == "primary").sum())
    rows = ["| claim | the paper said | we found against the matched control (95 % intervals, uncorrected) "
            "| how sure |", "|---|---|---|---|"]
    for number, claim in PAPER_CLAIMS.items():
        if number == 0 or not (table["claim"] == number).any():
            continue
        matched, corrected, names, _ = claim_tests(table, number)
        main = matched[matched["name"] == names[0]]
        found = "; ".join(finding(row) for _, row in main.iterrows())
        seeds = sorted(set(main["n"].astype(int)))
        count = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        sure = f"{count} seeds, Holm over {family}" if corrected else f"{count} seeds, exploratory"
        said = claim.short + (f" ({PAPER['baseline']['test'] * 100:.0f} % for all three)" if number == 1 else "")
        rows.append(f"| {number}. {claim.title} | {said} | {heading(main.iloc[0])}: {found} | {sure} |")
    return "\n".join(rows)


def recipe_not_ode(table: pd.DataFrame) -> str:
    """Where the paper's own "more stable" comparison reproduces (the NODE arm steadier than the baseline, the
    interval clear of zero) while its matched control is as steady: the plain-language reading, per regime."""
    sentences = []
    primary = table[(table["role"] == "primary") & table["difference_pct"].notna()]
    for _, row in primary.iterrows():
        paper = table[(table["role"] == "paper") & (table["regime"] == row["regime"]) & (table["a"] == row["a"])
                      & (table["b"] == "baseline") & (table["name"] == row["name"])]
        if paper.empty or not paper.iloc[0]["ci_high"] < 0 or row["verdict_holm"] == "holds":
            continue
        own = paper.iloc[0]
        sentences.append(
            f"In the {regime_short(row['regime'])} regime the paper's comparison reproduces: {row['a']} is steadier "
            f"than the baseline ({statistic(row['name']).label} {percent_text(own)}), but against {row['b']}, the "
            f"same training without the ODE, the difference shrinks to {percent_text(row)} "
            f"({row['verdict_holm']}): most of the steadier curve comes with the recipe, not with the ODE.")
    return " ".join(sentences)


def arms_line(data: StudyData, table: pd.DataFrame) -> str:
    """Every arm the claims table and the paper's comparisons name, once, in words (from the suites' groups)."""
    named = dict.fromkeys(label for column in ("a", "b") for label in table.loc[
        table["role"].isin(["primary", "paper"]) | (table["claim"] == 4), column])
    groups: dict[str, str] = {}
    for runs, _ in data.values():
        if "group" in runs:
            for label, group in runs.drop_duplicates("label").set_index("label")["group"].items():
                groups.setdefault(label, group)
    return "**The arms** ([glossary](glossary.md)). " + "; ".join(
        f"*{label}*: {re.sub(r'^(control|cross|variant): ', '', groups[label])}" for label in named
        if label in groups) + "."


def paper_comparisons(reach: dict[tuple[str, str], str], table: pd.DataFrame) -> str:
    """The paper's own (confounded) accuracy comparisons against the baseline, by regime, and how many runs of the
    NODE arms reached the paper's own target (the baseline's best validation accuracy)."""
    rows = table[(table["role"] == "paper") & (table["name"] == "test_acc") & (table["b"] == "baseline")]
    below = [f"{row['a']} {interval_text(row)} ({regime_short(row['regime'])})" for _, row in rows.iterrows()
             if row["n"] >= 2 and row["ci_high"] < 0]
    reached = [f"{label} in {count} ({regime_short(regime)})" for (regime, label), count in reach.items()
               if label in set(rows["a"])]
    text = ("**The paper's own comparisons** (against the baseline, so the ODE comes mixed with more training and "
            "another optimizer or learning rate): ")
    text += (f"the continued NODE arms end below the baseline they start from: {', '.join(below)}. " if below else
             "no continued NODE arm ends below the baseline it starts from. ")
    if reached:
        text += ("The paper's target, the baseline's best validation accuracy, was reached by "
                 f"{', '.join(reached)} runs.")
    reading = recipe_not_ode(table)
    text += f" {reading}" if reading else ""
    return text


def labelled_piece(row: pd.Series, corrected: bool) -> str:
    """'rk − fc-adam +0.09 [-0.09, +0.28] points (**holds**)': a test's difference, its share of the control's level
    and its target reach where it has them, and its label (after Holm's correction if `corrected`)."""
    label = row["verdict_holm"] if corrected else row["verdict"]
    reached = (f", target reached in {int(row['reached_a'])} and {int(row['reached_b'])} of {row['n']} seeds"
               if pd.notna(row.get("reached_a")) else "")
    share = percent_text(row)
    return f"{row['a']} − {row['b']} {interval_text(row)}{f' ({share})' if share else ''}{reached} (**{label}**)"

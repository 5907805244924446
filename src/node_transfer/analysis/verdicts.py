"""The declared tests (`claims`) computed on runs: one row per test with its numbers, label and confounds.

A verdict is computed, never typed: `compare` pairs the seeds both configurations have (optionally filtered),
computes the statistic (stability over each seed's own late window, `statistics.pair_window`), its minimum effect
of interest from the registry, and `paired.verdict` labels it. `endpoint_row` adds what a reader needs to trust it:
what the two arms differ in besides the head (`confounds`, with the learning rate read per epoch from
`history.csv` over the window), and the rule that a steadier validation loss with a worse training fit is a
head that **overfits more slowly** (`overfitting_rule`). `family_table` computes a study's regimes and applies
Holm's correction to the primary tests (`paired.holm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..suites.results import fine_curves_of
from .claims import Regime
from .confounds import confounds
from .convergence import choose_target, describe_target, times_to_target
from .endpoints import Endpoint
from .fine import MIN_FINE_POINTS, fine_loss_level, fine_values
from .paired import (
    ALPHA,
    CORRECTIONS,
    OVERFITS_MORE_SLOWLY,
    PairedComparison,
    claim_p_values,
    describe,
    paired_compare,
    percent_of_control,
    seeds_to_decide,
    verdict,
)
from .statistics import (
    MIN_WINDOW,
    by_seed,
    early_mean,
    late_values,
    pair_window,
    run_history,
    stability_statistics,
    statistic,
)


@dataclass(frozen=True)
class Options:
    """How a family of tests is computed; the sensitivity checks change one field each."""

    name: str = "as declared"
    swap_statistic: bool = False  # use each statistic's registry `alternative`
    swap: tuple[tuple[str, str], ...] = ()  # (declared, instead) statistic pairs: another stability statistic
    window: str = "default"  # a rule of `statistics.WINDOW_RULES`: "longer" (x1.5), "shorter" (x1/2)
    margin_scale: float = 1.0  # every minimum effect x this (0.6: accuracy ±0.3 points; 2: ±1.0)
    drop_early_stopped: bool = False  # leave out seeds where either arm stopped at its target
    seed_filter: Callable[[pd.DataFrame], set[int]] | None = None  # seeds allowed, from the regime's runs
    regime_seed_rules: bool = True  # apply each regime's own seed rule (`Regime.recorded_seeds_only`)
    pool_confirmations: bool = False  # also test the seeds a regime keeps for its confirmation (`Regime.seeds`)
    method: str = "t"  # the labels' one-sample test (`paired.METHODS`): "t" or "wilcoxon"
    correction: str = "holm"  # the family's correction (`paired.CORRECTIONS`): "holm" or "bh"

    def statistic_for(self, declared: str) -> str:
        """The statistic this analysis computes in place of a declared one."""
        if self.swap_statistic:
            return statistic(declared).alternative or declared
        return dict(self.swap).get(declared, declared)


#: The analysis as declared: every paired seed the regime's rule keeps. A seed filter set here changes the primary
#: tests, the pages and the READMEs with it.
DECLARED = Options()


def seeds_on_one_cpu_model(runs: pd.DataFrame) -> set[int]:
    """The seeds whose runs all recorded one and the same CPU model (one seed's model may differ from another's:
    every test pairs runs within a seed); a run made before the model was recorded counts as unknown, so its seed
    is left out."""
    if "cpu" not in runs:
        return set()
    consistent = runs.groupby("seed")["cpu"].agg(lambda cpus: bool(cpus.notna().all() and cpus.nunique() == 1))
    return set(consistent[consistent].index.astype(int))


def regime_options(regime: Regime, options: Options = DECLARED) -> Options:
    """The options with the regime's seed rules (one recorded CPU model; its exploratory seeds, unless a
    confirmation's seeds are pooled in) added to any seed filter they already have."""
    rules = []
    if regime.recorded_seeds_only and options.regime_seed_rules:
        rules.append(seeds_on_one_cpu_model)
    if regime.seeds is not None and not options.pool_confirmations:
        rules.append(lambda runs, chosen=frozenset(regime.seeds): set(chosen))
    if options.seed_filter is not None:
        rules.append(options.seed_filter)
    if not rules:
        return options
    return replace(options, seed_filter=lambda runs: set.intersection(*(set(rule(runs)) for rule in rules)))


def paired_seeds(runs: pd.DataFrame, a: str, b: str, options: Options = DECLARED) -> list[int]:
    """The seeds both a and b have finished, less those the options leave out."""
    seeds = set(runs.loc[runs["label"] == a, "seed"]) & set(runs.loc[runs["label"] == b, "seed"])
    if options.drop_early_stopped and "stopped_early" in runs:
        stopped = runs[runs["label"].isin([a, b]) & runs["stopped_early"].fillna(False).astype(bool)]
        seeds -= set(stopped["seed"])
    if options.seed_filter is not None:
        seeds &= set(options.seed_filter(runs))
    return sorted(int(s) for s in seeds)


def pair_windows(histories: pd.DataFrame, a: str, b: str, seeds: list[int], rule: str = "default"
                 ) -> tuple[dict[int, int], list[int]]:
    """Each seed's window for the pair (`statistics.pair_window`), and the seeds whose pair cannot give
    `MIN_WINDOW` changes (left out of the pair's curve tests)."""
    lengths = histories[histories["label"].isin([a, b])].groupby(["label", "seed"])["epoch"].max()
    windows, short = {}, []
    for seed in seeds:
        if (a, seed) not in lengths.index or (b, seed) not in lengths.index:
            continue
        window = pair_window(int(lengths[(a, seed)]), int(lengths[(b, seed)]), rule)
        if window >= MIN_WINDOW:
            windows[seed] = window
        else:
            short.append(seed)
    return windows, short


def window_span(windows: dict[int, int]) -> str:
    """'4' or '4-20': the windows' lengths in changes."""
    if not windows:
        return "0"
    low, high = min(windows.values()), max(windows.values())
    return f"{low}" if low == high else f"{low}-{high}"


def compare(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, name: str,
            options: Options = DECLARED) -> PairedComparison:
    """`a` against `b` on one statistic, over their paired seeds (`paired_seeds`), with the registry's minimum
    effect (x `options.margin_scale`). `details` holds the windows, and for the speed test its target."""
    s = statistic(name)
    seeds = paired_seeds(runs, a, b, options)
    details: dict = {"window": 0, "windows": {}, "note": ""}
    loss_level = 0.0
    if s.curve == "fine_val_loss":
        fine = fine_curves_of(histories)
        values_a, values_b, points, short = fine_values(fine, a, b, seeds, options.window)
        loss_level = fine_loss_level(fine, b, points)
        details.update(windows=points, note=f"left out (no fine curve, or under {MIN_FINE_POINTS} points): "
                                            f"{', '.join(map(str, short))}" if short else "")
    elif s.curve:
        windows, short = pair_windows(histories, a, b, seeds, options.window)
        seeds = sorted(windows)
        if short:  # a pair whose shorter run stopped early judges its own seed; too short a pair is left out
            details["note"] = (f"seed{'s' if len(short) > 1 else ''} {', '.join(map(str, short))} left out: the "
                               f"pair's late window held fewer than {MIN_WINDOW} changes")
        values_a, values_b = (pd.Series({seed: stability_statistics(run_history(histories, label, seed), windows[seed])[
            name] for seed in seeds}, dtype=float) for label in (a, b))
        if s.loss_floor and seeds:
            loss = "train_loss" if s.curve == "train_loss" else "val_loss"
            loss_level = float(np.mean([late_values(run_history(histories, b, seed)[loss], windows[seed]).mean()
                                        for seed in seeds]))
        details.update(window=max(windows.values(), default=0), windows=windows)
    elif name == "val_acc_early_mean":
        values_a, values_b = (pd.Series({seed: early_mean(run_history(histories, label, seed)) for seed in seeds},
                                        dtype=float) for label in (a, b))
    elif s.kind == "speed":
        target = choose_target(runs, histories, a, b, seeds, rising="rising" in name)
        times_a, times_b = (times_to_target(histories, label, target.values) for label in (a, b))
        column = "seconds" if s.unit == "s" else "epochs"
        values_a, values_b = times_a[column].astype(float), times_b[column].astype(float)
        details.update(note=describe_target(target, times_a, times_b, a, b), reached_a=int(times_a["reached"].sum()),
                       reached_b=int(times_b["reached"].sum()), target_drop=target.drop)
    else:
        values_a, values_b = (by_seed(runs, label, name) for label in (a, b))
        values_a, values_b = values_a[values_a.index.isin(seeds)], values_b[values_b.index.isin(seeds)]
    control_level = float(values_b.mean()) if len(values_b) else 0.0
    margin = s.minimum_effect(control_level) * options.margin_scale
    result = paired_compare(values_a, values_b, name, (a, b), s.higher_is_better, margin,
                            floor=s.holds_floor(loss_level) * options.margin_scale, method=options.method)
    result.details = details
    return result


def overfitting_rule(result: PairedComparison, label: str, histories: pd.DataFrame) -> tuple[str, str]:
    """A validation-loss statistic that favours a while a's training loss ends higher than b's (paired 95%
    interval above zero) measures a head that overfits more slowly, not steadier training: relabelled so."""
    s = statistic(result.statistic)
    if s.curve != "val_loss" or result.advantage <= 0 or label == "undecided" or label.startswith("does"):
        return label, ""
    rows = histories[histories["label"].isin([result.a, result.b]) & histories["seed"].isin(result.seeds)]
    last = rows.sort_values("epoch").groupby(["label", "seed"])["train_loss"].last()
    fit = paired_compare(last.get(result.a, pd.Series(dtype=float)), last.get(result.b, pd.Series(dtype=float)),
                         "train_loss", (result.a, result.b), higher_is_better=False)
    if fit.n >= 2 and fit.ci_low > 0:
        return OVERFITS_MORE_SLOWLY, (f"{result.a}'s final training loss is higher than {result.b}'s by "
                                      f"{fit.mean_diff:.3f} [{fit.ci_low:.3f}, {fit.ci_high:.3f}]")
    return label, ""


def endpoint_row(runs: pd.DataFrame, histories: pd.DataFrame, regime: Regime, test: Endpoint,
             options: Options = DECLARED) -> dict:
    """One declared test computed: its numbers (in display units), raw label, confounds and notes."""
    name = options.statistic_for(test.statistic)
    s = statistic(name)
    result = compare(runs, histories, test.a, test.b, name, options)
    p = claim_p_values(result, test.kind)
    label, overfit = overfitting_rule(result, verdict(result, test.kind, p), histories)
    confound = confounds(runs, histories, test.a, test.b, result.seeds, result.details["window"])
    role = "exploratory" if test.role == "primary" and confound else test.role
    groups = runs.drop_duplicates("label").set_index("label")["group"] if "group" in runs else pd.Series(dtype=str)
    return {"regime": regime.title, "claim": test.claim, "test": test.wording(), "role": role, "kind": test.kind,
            "a": test.a, "b": test.b, "against": groups.get(test.b, test.b), "name": name, "statistic": s.label,
            "unit": s.unit,
            "n": result.n, "seeds": ", ".join(map(str, result.seeds)), "window": result.details["window"],
            "mean_a": result.mean_a * s.scale, "mean_b": result.mean_b * s.scale,
            "difference": result.mean_diff * s.scale, "ci_low": result.ci_low * s.scale,
            "ci_high": result.ci_high * s.scale, "effect_size": result.effect_size,
            **percent_of_control(result, s.kind),
            "minimum_effect": (result.margin or 0.0) * s.scale, "holds_floor": result.floor * s.scale,
            "correlation": result.correlation, "windows": window_span(result.details.get("windows", {})),
            "p_value": result.p_value,
            "p_holds": p["holds"], "p_fails": p["fails"], "verdict": label, "a_better_in": result.a_better_in,
            "reached_a": result.details.get("reached_a"), "reached_b": result.details.get("reached_b"),
            "confound": confound, "note": "; ".join(x for x in (result.details["note"], overfit) if x),
            "measured": describe(result), "result": result}


def regime_table(runs: pd.DataFrame, histories: pd.DataFrame, regime: Regime, options: Options = DECLARED,
                 primary_only: bool = False) -> pd.DataFrame:
    """Every declared test of a regime on its runs (tests whose labels have no runs yet are left out); with
    `primary_only` its primary tests alone (what the sensitivity checks recompute)."""
    present = set(runs["label"]) if len(runs) else set()
    options = regime_options(regime, options)
    tests = regime.primary() if primary_only else regime.tests
    has_fine = not fine_curves_of(histories).empty
    rows = [endpoint_row(runs, histories, regime, test, options) for test in tests if {test.a, test.b} <= present
            and (has_fine or statistic(test.statistic).curve != "fine_val_loss")]
    return pd.DataFrame(rows)


def with_holm(table: pd.DataFrame, histories: dict[str, pd.DataFrame], correction: str = "holm") -> pd.DataFrame:
    """Holm over the table's primary rows: adjusted p-values and the label read from them (`verdict_holm`);
    `histories` (by regime title) feed the overfitting rule. Other rows keep '' (exploratory: uncorrected).
    `correction` "bh" adjusts by Benjamini-Hochberg instead (a sensitivity check; the columns keep their names)."""
    table = table.copy()
    table["p_holm"], table["verdict_holm"] = np.nan, ""
    primary = table.index[table["role"] == "primary"] if len(table) else []
    if not len(primary):
        return table
    adjust = CORRECTIONS[correction]
    adjusted = {key: adjust([claim_p_values(table.at[i, "result"], table.at[i, "kind"])[key] for i in primary])
                for key in ("holds", "fails", "differs")}
    for position, i in enumerate(primary):
        result, kind = table.at[i, "result"], table.at[i, "kind"]
        p = {key: float(values[position]) for key, values in adjusted.items()}
        label, _ = overfitting_rule(result, verdict(result, kind, p), histories[table.at[i, "regime"]])
        deciding = {"does not hold": "fails"}.get(label, "differs" if "not shown" in label else "holds")
        table.at[i, "verdict_holm"], table.at[i, "p_holm"] = label, p[deciding]
    return table


def with_planned_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """`seeds_low`/`seeds_high` (`planned_seeds`) for each undecided primary test of a Holm-corrected table (NaN
    elsewhere): for the tables people read; the sensitivity scenarios, which read only labels, skip it."""
    table = table.copy()
    table["seeds_low"], table["seeds_high"] = np.nan, np.nan
    primary = table.index[table["role"] == "primary"] if len(table) else []
    for i in primary:
        if table.at[i, "verdict_holm"] == "undecided":
            table.loc[i, ["seeds_low", "seeds_high"]] = planned_seeds(table.at[i, "result"], table.at[i, "kind"],
                                                                      len(primary))
    return table


def planned_seeds(result: PairedComparison, kind: str, family: int) -> tuple[float, float]:
    """Paired seeds an undecided test would need if its mean difference and SD stayed as measured, from Holm's
    last step (α) to its first (α / family): where a test falls in Holm's order depends on the others. inf: more
    than `seeds_to_decide` looks at; NaN: fewer than two seeds to plan from."""
    if result.n < 2:
        return float("nan"), float("nan")
    low = seeds_to_decide(result, kind, ALPHA)
    high = seeds_to_decide(result, kind, ALPHA / family, start=low) if low is not None else None
    return float(low or "inf"), float(high or "inf")


def family_table(data: dict[Regime, tuple[pd.DataFrame, pd.DataFrame]], options: Options = DECLARED,
                 primary_only: bool = False) -> pd.DataFrame:
    """The tests of several regimes (one study) in one table, Holm applied over all their primary tests."""
    tables = []
    for regime, (runs, histories) in data.items():
        tables.append(regime_table(runs, histories, regime, options, primary_only))
    table = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else \
        pd.DataFrame(columns=["regime", "claim", "role", "verdict", "result"])
    return with_holm(table, {regime.title: histories for regime, (_, histories) in data.items()}, options.correction)

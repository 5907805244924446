"""The declared tests (`claims`) computed on runs: one row per test with its numbers, label and confounds.

A verdict is computed, never typed: `compare` pairs the seeds both configurations have (optionally filtered),
computes the statistic (stability over one late window set from those paired seeds only), its minimum effect of
interest from the registry, and `paired.verdict` labels it. `endpoint_row` adds what a reader needs to trust it:
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

from .claims import Endpoint, Regime
from .convergence import choose_target, describe_target, start_label, times_to_target
from .paired import (
    ALPHA,
    OVERFITS_MORE_SLOWLY,
    PairedComparison,
    claim_p_values,
    holm,
    paired_compare,
    seeds_to_decide,
    verdict,
)
from .statistics import (
    MIN_WINDOW,
    by_seed,
    common_window,
    default_window,
    late_values,
    stability_statistics,
    statistic,
)

#: Recipe fields two arms must share, besides the starting checkpoint, for a comparison to isolate the head.
RECIPE = ("optimizer", "lr", "momentum", "schedule", "lr_milestones", "batch_size", "train_subset")


@dataclass(frozen=True)
class Options:
    """How a family of tests is computed; the sensitivity checks change one field each."""

    name: str = "as declared"
    swap_statistic: bool = False  # use each statistic's registry `alternative`
    window: str = "default"  # or "longer" (`statistics.common_window`)
    margin_scale: float = 1.0  # every minimum effect x this (0.6: accuracy ±0.3 points; 2: ±1.0)
    drop_early_stopped: bool = False  # leave out seeds where either arm stopped at its target
    seed_filter: Callable[[pd.DataFrame], set[int]] | None = None  # seeds allowed, from the regime's runs
    regime_seed_rules: bool = True  # apply each regime's own seed rule (`Regime.recorded_seeds_only`)


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
    """The options with the regime's seed rule added to any seed filter they already have."""
    if not (regime.recorded_seeds_only and options.regime_seed_rules):
        return options
    given = options.seed_filter
    rule = seeds_on_one_cpu_model if given is None else (lambda runs: given(runs) & seeds_on_one_cpu_model(runs))
    return replace(options, seed_filter=rule)


def paired_seeds(runs: pd.DataFrame, a: str, b: str, options: Options = DECLARED) -> list[int]:
    """The seeds both a and b have finished, less those the options leave out."""
    seeds = set(runs.loc[runs["label"] == a, "seed"]) & set(runs.loc[runs["label"] == b, "seed"])
    if options.drop_early_stopped and "stopped_early" in runs:
        stopped = runs[runs["label"].isin([a, b]) & runs["stopped_early"].fillna(False).astype(bool)]
        seeds -= set(stopped["seed"])
    if options.seed_filter is not None:
        seeds &= set(options.seed_filter(runs))
    return sorted(int(s) for s in seeds)


def _curve_values(histories: pd.DataFrame, label: str, name: str, seeds: list[int], window: int) -> pd.Series:
    rows = histories[(histories["label"] == label) & histories["seed"].isin(seeds)]
    return pd.Series({seed: stability_statistics(h, window)[name] for seed, h in rows.groupby("seed")}, dtype=float)


def compare(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, name: str,
            options: Options = DECLARED) -> PairedComparison:
    """`a` against `b` on one statistic, over their paired seeds (`paired_seeds`), with the registry's minimum
    effect (x `options.margin_scale`). `details` holds the window, and for the speed test its target."""
    s = statistic(name)
    seeds = paired_seeds(runs, a, b, options)
    details: dict = {"window": 0, "note": ""}
    loss_level = 0.0
    if s.curve:
        paired = histories[histories["label"].isin([a, b]) & histories["seed"].isin(seeds)]
        lengths = paired.groupby(["label", "seed"])["epoch"].max()
        short = sorted({int(seed) for (_, seed), epochs in lengths.items() if default_window(int(epochs)) < MIN_WINDOW})
        if short:  # a run stopped at its target within two epochs has no late window; it would shrink everyone's
            seeds = [seed for seed in seeds if seed not in short]
            paired = paired[paired["seed"].isin(seeds)]
            lengths = lengths[lengths.index.get_level_values("seed").isin(seeds)]
            details["note"] = (f"seed{'s' if len(short) > 1 else ''} {', '.join(map(str, short))} left out: a run "
                               f"stopped at its target before its late window held {MIN_WINDOW} changes")
        window = common_window(lengths.tolist(), options.window)
        values_a, values_b = (_curve_values(histories, label, name, seeds, window) for label in (a, b))
        if s.curve.endswith("loss") and len(seeds):
            control = paired[paired["label"] == b]
            loss_level = float(np.mean([late_values(h[s.curve], window).mean() for _, h in control.groupby("seed")]))
        details["window"] = window
    elif name == "epochs_to_target":
        target = choose_target(runs, histories, a, b, seeds)
        times_a, times_b = (times_to_target(histories, label, target.values) for label in (a, b))
        values_a, values_b = times_a["epochs"].astype(float), times_b["epochs"].astype(float)
        details.update(note=describe_target(target, times_a, times_b, a, b), reached_a=int(times_a["reached"].sum()),
                       reached_b=int(times_b["reached"].sum()), target_drop=target.drop)
    else:
        values_a, values_b = (by_seed(runs, label, name) for label in (a, b))
        values_a, values_b = values_a[values_a.index.isin(seeds)], values_b[values_b.index.isin(seeds)]
    control_level = float(values_b.mean()) if len(values_b) else 0.0
    margin = s.minimum_effect(control_level, loss_level) * options.margin_scale
    result = paired_compare(values_a, values_b, name, (a, b), s.higher_is_better, margin)
    result.details = details
    return result


def describe(result: PairedComparison) -> str:
    """'test accuracy: rk 90.65 vs baseline 91.17; difference -0.52 [-0.75, -0.30] points, d_z -2.9, rk better
    in 0/5 seeds' in the statistic's own scale."""
    s = statistic(result.statistic)
    if result.n == 0:
        return f"{s.label}: no paired seeds"
    interval = f" [{s.show(result.ci_low, True)}, {s.show(result.ci_high, True)}]" if result.n >= 2 else ""
    effect = f", d_z {result.effect_size:+.1f}" if np.isfinite(result.effect_size) else ""
    return (f"{s.label}: {result.a} {s.show(result.mean_a)} vs {result.b} {s.show(result.mean_b)}; difference "
            f"{s.show(result.mean_diff, True)}{interval}{' ' + s.unit if s.unit else ''}{effect}, {result.a} better "
            f"in {result.a_better_in}/{result.n} seeds")


def _learning_rates(histories: pd.DataFrame, label: str, seed: int, window: int) -> np.ndarray:
    history = histories[(histories["label"] == label) & (histories["seed"] == seed)].sort_values("epoch")
    return history["lr"].to_numpy(dtype=float)[-window:] if window > 0 else np.array([])


def _show_rates(rates: np.ndarray) -> str:
    return f"{rates[0]:.2g}" if np.allclose(rates, rates[0]) else f"{rates[0]:.2g} → {rates[-1]:.2g}"


def confounds(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, seeds: list[int], window: int) -> str:
    """What a and b differ in besides the head, as a phrase ('' when they are matched): the checkpoint they start
    from, the optimizer, and the learning rate, read per epoch from history.csv's `lr` over the window where the
    statistic has one, else from the configuration."""
    found = []
    start_a, start_b = start_label(runs, a), start_label(runs, b)
    if start_a != start_b:
        origin = {label: start or "the pretrained weights" for label, start in ((a, start_a), (b, start_b))}
        found.append(f"{a} is {b} trained further" if start_a == b else
                     f"{a} starts from {origin[a]}, {b} from {origin[b]}")
    first = {label: runs[runs["label"] == label].iloc[0] for label in (a, b) if (runs["label"] == label).any()}
    if len(first) == 2 and first[a].get("optimizer") != first[b].get("optimizer"):
        found.append(f"optimizer {first[a]['optimizer']} vs {first[b]['optimizer']}")
    if window and seeds and "lr" in histories:
        rates = {label: _learning_rates(histories, label, seeds[0], window) for label in (a, b)}
        differ = any(not np.allclose(_learning_rates(histories, a, seed, window),
                                     _learning_rates(histories, b, seed, window)) for seed in seeds)
        if differ:
            found.append(f"learning rate in the window {a} {_show_rates(rates[a])}, {b} {_show_rates(rates[b])}")
    elif len(first) == 2 and any(str(first[a].get(f)) != str(first[b].get(f)) for f in RECIPE if f != "optimizer"):
        found.append("learning-rate recipe differs")
    return "; ".join(found)


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
    name = statistic(test.statistic).alternative if options.swap_statistic else test.statistic
    name = name or test.statistic
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
            "minimum_effect": (result.margin or 0.0) * s.scale, "p_value": result.p_value,
            "p_holds": p["holds"], "p_fails": p["fails"], "verdict": label, "a_better_in": result.a_better_in,
            "reached_a": result.details.get("reached_a"), "reached_b": result.details.get("reached_b"),
            "confound": confound, "note": "; ".join(x for x in (result.details["note"], overfit) if x),
            "measured": describe(result), "result": result}


def regime_table(runs: pd.DataFrame, histories: pd.DataFrame, regime: Regime, options: Options = DECLARED
                 ) -> pd.DataFrame:
    """Every declared test of a regime on its runs (tests whose labels have no runs yet are left out)."""
    present = set(runs["label"]) if len(runs) else set()
    options = regime_options(regime, options)
    rows = [endpoint_row(runs, histories, regime, test, options) for test in regime.tests
            if {test.a, test.b} <= present]
    return pd.DataFrame(rows)


def with_holm(table: pd.DataFrame, histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Holm over the table's primary rows: adjusted p-values and the label read from them (`verdict_holm`);
    `histories` (by regime title) feed the overfitting rule. Other rows keep '' (exploratory: uncorrected)."""
    table = table.copy()
    table["p_holm"], table["verdict_holm"] = np.nan, ""
    primary = table.index[table["role"] == "primary"] if len(table) else []
    if not len(primary):
        return table
    adjusted = {key: holm([claim_p_values(table.at[i, "result"], table.at[i, "kind"])[key] for i in primary])
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


def family_table(data: dict[Regime, tuple[pd.DataFrame, pd.DataFrame]], options: Options = DECLARED
                 ) -> pd.DataFrame:
    """The tests of several regimes (one study) in one table, Holm applied over all their primary tests."""
    tables = []
    for regime, (runs, histories) in data.items():
        tables.append(regime_table(runs, histories, regime, options))
    table = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else \
        pd.DataFrame(columns=["regime", "claim", "role", "verdict", "result"])
    return with_holm(table, {regime.title: histories for regime, (_, histories) in data.items()})

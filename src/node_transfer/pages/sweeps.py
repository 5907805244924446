"""The beyond chapter's sweeps (tolerance, solvers, newer options), each configuration against a reference one,
with the same paired tests and labels as the paper's claims (all exploratory: no family, no correction), and the
numbers and phrases the chapter states (`beyond_facts`), so that the page only loads, shows and glues.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.paired import HOLDS, UNDECIDED, describe, verdict
from ..analysis.statistics import statistic
from ..analysis.verdicts import compare, overfitting_rule
from ..core.suitedir import read_runs_table
from ..suites.results import load_suite, suite_scale

#: The target set for the beyond study before any run: within the reference's seed SD in test accuracy, at least
#: this many times fewer forward NFE and this much less time per epoch.
TARGET_NFE_REDUCTION, TARGET_SPEED_UP = 2.0, 1.5
#: What the chapter calls "cheaper" and "dearer" per epoch than the recipe.
CHEAPER, DEARER = 1.2, 0.9
SWEEP_SUITES = {"tolerance": "tolerance-fmnist", "solvers": "solvers-fmnist", "beyond": "beyond-fmnist"}


def label_of(runs: pd.DataFrame, histories: pd.DataFrame, a: str, b: str, name: str) -> tuple[str, str]:
    """(label, measured) of "a has the same accuracy as b" (accuracy) or "a is steadier than b" (stability)."""
    result = compare(runs, histories, a, b, name)
    kind = "same" if statistic(name).kind == "accuracy" else "better"
    label, _ = overfitting_rule(result, verdict(result, kind), histories)
    return label, describe(result)


def against_reference(runs: pd.DataFrame, histories: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Each configuration of a sweep against a reference one: accuracy, NFE, time, the paired labels (accuracy:
    same within ±0.5 points; stability: steadier by the registry's minimum effect) and whether it meets the
    beyond target (`TARGET_NFE_REDUCTION`, `TARGET_SPEED_UP`, test accuracy within the reference's seed SD)."""
    means = runs.groupby("label", sort=False)[["test_acc", "nfe_forward", "nfe_backward", "seconds_per_epoch"]].mean()
    stds = runs.groupby("label", sort=False)["test_acc"].std(ddof=1)
    ref = means.loc[reference]
    table = pd.DataFrame({
        "test %": (means["test_acc"] * 100).round(2),
        "NFE fwd": means["nfe_forward"].round(1), "NFE bwd": means["nfe_backward"].round(1),
        "NFE fwd reduction": (ref["nfe_forward"] / means["nfe_forward"]).round(2),
        "s / epoch": means["seconds_per_epoch"].round(3),
        "speed-up per epoch": (ref["seconds_per_epoch"] / means["seconds_per_epoch"]).round(2),
    }, index=means.index)
    floor = ref["test_acc"] - (stds.loc[reference] if not math.isnan(stds.loc[reference]) else 0.0)
    table["meets target"] = ((means["test_acc"] >= floor) & (table["NFE fwd reduction"] >= TARGET_NFE_REDUCTION)
                             & (table["speed-up per epoch"] >= TARGET_SPEED_UP))
    table.loc[reference, "meets target"] = False
    for name, column in (("test_acc", "same accuracy as ref"), ("val_loss_fluctuation", "steadier val loss"),
                         ("train_loss_fluctuation", "steadier training")):
        table[column] = ["–" if label == reference else label_of(runs, histories, label, reference, name)[0]
                         for label in means.index]
    return table.rename_axis("configuration").reset_index()


def _names(frame: pd.DataFrame) -> str:
    return ", ".join(frame["configuration"]) or "none"


def _versus_controls(prefix: str, runs: pd.DataFrame, histories: pd.DataFrame, node: str) -> dict[str, str]:
    facts = {}
    for control in ("control-mlp", "control-fc"):  # is it the ODE, or would any head on these features do?
        key = f"{prefix}_vs_{control.replace('-', '_')}"
        facts[key], facts[f"{key}_measured"] = label_of(runs, histories, node, control, "test_acc")
    return facts


def beyond_facts(results: str | Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Every number and phrase the beyond chapter states, by name, and the tables it shows: each sweep's runs
    (`tolerance`, `solvers`, `beyond`) and the options against the paper's recipe (`versus`)."""
    results = Path(results)
    sweeps = {name: load_suite(results / directory) for name, directory in SWEEP_SUITES.items()}
    facts: dict[str, Any] = {f"scale_{name}": suite_scale(results / SWEEP_SUITES[name], runs)
                             for name, (runs, _) in sweeps.items()}
    every = pd.concat([runs for runs, _ in sweeps.values()], ignore_index=True)
    long_node = read_runs_table(results / "heads-fmnist").query("label == 'node'")  # runs only
    facts.update(sweep_configs=sum(runs["label"].nunique() for runs, _ in sweeps.values()),
                 sweep_hours=float(every["seconds"].sum() / 3600),
                 long_budget=f"{long_node['train_subset'].max():,.0f} training images, {long_node['epochs'].max()} "
                             f"epochs, {long_node['seed'].nunique()} seeds",
                 long_run_factor=float(long_node["train_subset"].max() * long_node["epochs"].max()
                                       / (every["train_subset"].max() * every["epochs"].max())),
                 target_nfe=TARGET_NFE_REDUCTION, target_speed=TARGET_SPEED_UP, cheaper_at=CHEAPER, dearer_at=DEARER,
                 margin=statistic("test_acc").minimum * 100)
    versus = against_reference(*sweeps["beyond"], "paper-recipe")
    for part in (_tolerance_facts(*sweeps["tolerance"]), _solver_facts(*sweeps["solvers"]),
                 _option_facts(*sweeps["beyond"], versus)):
        facts.update(part)
    return facts, {**{name: runs for name, (runs, _) in sweeps.items()}, "versus": versus}


def _tolerance_facts(runs: pd.DataFrame, histories: pd.DataFrame) -> dict[str, Any]:
    by_tol = runs[runs["head"] == "node"].groupby("rtol")[["test_acc", "nfe_forward"]].mean()
    seconds = runs.groupby("label")["seconds_per_epoch"].mean()
    facts = {"nfe_tol_loose": float(by_tol["nfe_forward"].iloc[-1]),
             "nfe_tol_tight": float(by_tol["nfe_forward"].iloc[0]),
             "acc_tol_loose": float(by_tol["test_acc"].iloc[-1] * 100),
             "acc_tol_paper": float(by_tol.loc[1e-5, "test_acc"] * 100),
             "tol_mlp_cost_ratio": float(seconds["tol-1e-5"] / seconds["control-mlp"])}
    facts["tol_verdict"], facts["tol_measured"] = label_of(runs, histories, "tol-1e-1", "tol-1e-5", "test_acc")
    return {**facts, **_versus_controls("tol", runs, histories, "tol-1e-5")}


def _solver_facts(runs: pd.DataFrame, histories: pd.DataFrame) -> dict[str, Any]:
    means = runs[runs["head"] == "node"].groupby("label", sort=False)[["test_acc", "nfe_forward"]].mean()
    labels = {label: label_of(runs, histories, label, "dopri5", "test_acc")[0] for label in means.index
              if label != "dopri5"}
    facts = {"solver_acc_low": float(means["test_acc"].min() * 100), "solver_acc_high": float(means["test_acc"].max()
                                                                                              * 100),
             "solver_configs": len(means), "nfe_dopri5": float(means.loc["dopri5", "nfe_forward"]),
             "euler_verdict": labels["euler-h1"],
             "solvers_equivalent": ", ".join(k for k, v in labels.items() if v == HOLDS) or "none",
             "solvers_undecided": ", ".join(k for k, v in labels.items() if v == UNDECIDED) or "none",
             "solvers_different": ", ".join(f"{k} ({v})" for k, v in labels.items() if v not in (HOLDS, UNDECIDED))
             or "none"}
    return {**facts, **_versus_controls("solver", runs, histories, "dopri5")}


def _option_facts(runs: pd.DataFrame, histories: pd.DataFrame, versus: pd.DataFrame) -> dict[str, Any]:
    options = versus[(versus["configuration"] != "paper-recipe") & ~versus["configuration"].str.startswith("control")]
    best = options.sort_values("NFE fwd reduction").iloc[-1]
    accuracy = options["same accuracy as ref"]
    return {
        "epochs_beyond": int(runs["epochs"].max()), "seeds_beyond": int(runs["seed"].nunique()),
        "targets_met": _names(options[options["meets target"]]), "best_nfe_config": best["configuration"],
        "best_nfe_reduction": float(best["NFE fwd reduction"]),
        "cheaper": _names(options[(options["speed-up per epoch"] >= CHEAPER) & (accuracy == HOLDS)]),
        "dearer": _names(options[options["speed-up per epoch"] < DEARER]),
        "steadier": _names(options[options["steadier val loss"] == HOLDS]),
        "steadier_training": _names(options[options["steadier training"] == HOLDS]),
        "acc_equivalent": _names(options[accuracy == HOLDS]), "acc_undecided": _names(options[accuracy == UNDECIDED]),
        "acc_changed": ", ".join(f"{c} ({v})" for c, v in zip(options["configuration"], accuracy)
                                 if v not in (HOLDS, UNDECIDED)) or "none",
    }


def page_facts(results: str | Path) -> dict[str, Any]:
    """Every name the beyond chapter glues from this module (`pages.PAGES`)."""
    return beyond_facts(results)[0]

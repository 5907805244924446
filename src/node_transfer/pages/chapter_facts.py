"""What the reproducing chapter states, computed here so that the page only loads, shows and glues.

`reproducing_facts` returns every number and phrase its prose glues, by name; the table builders return what it
shows: one row per numbered claim (`claims_summary`), the discrepancies with the paper (`discrepancy_table`),
and the compute each suite took (`compute_table`); the seeds behind each regime come from `seeds`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.claims import ADJOINT_SEEDS_CAP, Regime
from ..analysis.convergence import LADDER
from ..analysis.findings import StudyData, load_study, primary, study_table
from ..analysis.paper import PAPER, PAPER_CLAIMS
from ..analysis.statistics import MIN_WINDOW, by_seed, statistic
from ..analysis.verdicts import seeds_on_one_cpu_model
from ..core.suitedir import SUITE_META
from ..suites.results import suite_compute, suite_progress
from .answer import confound_kinds, target_reach
from .epoch_cost import chapter_cost_facts
from .overfit_facts import overfit_facts
from .seeds import adjoint_seed_plan, not_finished, seed_spans, seeds_by_configuration, seeds_range, spans


def regime_data(data: StudyData, suite: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs and histories of the study's regime of one suite (`paper`, `heads`); empty frames when absent."""
    for regime, frames in data.items():
        if regime.suite == suite:
            return frames
    return pd.DataFrame(), pd.DataFrame()


def regime_title(data: StudyData, suite: str) -> str:
    return next((regime.title for regime in data if regime.suite == suite), suite)


def regime_of(data: StudyData, suite: str) -> Regime:
    """The study's regime that a suite's runs make."""
    return next(regime for regime in data if regime.suite == suite)


def claims_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per numbered claim: the paper's own comparison and the matched-control comparison with their labels
    (Holm-corrected for primary tests), and how many of the matched tests hold."""
    rows = []
    for number, claim in PAPER_CLAIMS.items():
        tests = table[table["claim"] == number]
        if tests.empty:
            continue
        matched = tests[tests["role"] == "primary"]
        corrected = not matched.empty
        if not corrected:
            matched = tests[tests["role"] == "exploratory"].drop_duplicates(["regime", "a", "b"])
        main = matched["name"].iloc[0]
        paper = tests[(tests["role"] == "paper") & (tests["name"] == main)]
        labels = matched["verdict_holm"] if corrected else matched["verdict"]
        counts = labels.value_counts()
        rows.append({
            "claim": f"{number}. {claim.title}", "statistic": statistic(main).label,
            "the paper's comparison (confounded)": "; ".join(f"{r.a} vs {r.b}: {r.verdict}" for r in paper.itertuples())
            or "–",
            "against the matched control": "; ".join(f"{r.a} vs {r.b} ({r.regime.split(', ')[-1]}): {label}"
                                                     for r, label in zip(matched.itertuples(), labels)),
            "reading": (", ".join(f"{count} {label}" for label, count in counts.items())
                        + (" (primary, Holm-corrected)" if corrected else " (exploratory)")),
        })
    return pd.DataFrame(rows)


def tests_table(table: pd.DataFrame, regime: str) -> pd.DataFrame:
    """One regime's tests as the chapter shows them: primary first, then the paper's comparisons, then the rest."""
    rows = table[table["regime"] == regime].copy()
    rows["order"] = rows["role"].map({"primary": 0, "paper": 1, "exploratory": 2})
    rows = rows.sort_values(["order", "claim"], kind="stable")
    rows["label (Holm)"] = rows["verdict_holm"].replace("", "–")
    rows["p (Holm)"] = rows["p_holm"].map(lambda p: "–" if pd.isna(p) else f"{p:.3f}")
    rows["effect d_z"] = rows["effect_size"].map(lambda d: "–" if not np.isfinite(d) else f"{d:+.1f}")
    rows["what else differs"] = rows["confound"].replace("", "nothing (matched)")
    rows["seeds to decide"] = [seeds_range(low, high) for low, high in zip(rows["seeds_low"], rows["seeds_high"])]
    return rows[["claim", "role", "test", "measured", "effect d_z", "verdict", "label (Holm)", "p (Holm)", "seeds",
                 "seeds to decide", "what else differs", "note"]].rename(columns={"verdict": "label"})


def compute_table(results: str | Path, pattern: str = "*-fmnist") -> pd.DataFrame:
    """Per suite directory under `results` matching `pattern`: runs finished, hours of run time added up (every
    run's own wall time) and of the suite's wall time (less where runs went two at a time)."""
    rows = [suite_compute(path.parent) for path in sorted(Path(results).glob(f"{pattern}/{SUITE_META}"))]
    return pd.DataFrame(rows).round({"run hours": 1, "wall hours": 1})


def cost_ratios(runs: pd.DataFrame, a: str, b: str) -> pd.Series:
    """Seconds per epoch of a over b as the runs recorded them, per seed where both recorded the same CPU model
    (different loads and sessions remain: a range, not a measurement of the head's cost; `epoch_cost` has that)."""
    same = runs[runs["label"].isin([a, b])].groupby("seed")["cpu"].agg(lambda c: c.notna().all() and c.nunique() == 1)
    seeds = same[same].index
    ratio = by_seed(runs, a, "seconds_per_epoch") / by_seed(runs, b, "seconds_per_epoch")
    return ratio[ratio.index.isin(seeds)].dropna()


def _finetune_facts(runs: pd.DataFrame, histories: pd.DataFrame) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for label in dict.fromkeys(runs["label"]):
        own = runs[runs["label"] == label]
        key = label.replace("-", "_")
        facts[f"ft_{key}_seeds"] = len(own)
        facts[f"ft_{key}_test"] = float(own["test_acc"].mean() * 100)
        facts[f"ft_{key}_nfe_forward"] = float(own["nfe_forward"].mean())
        facts[f"ft_{key}_nfe_backward"] = float(own["nfe_backward"].mean())
    baseline = runs[runs["label"] == "baseline"]
    facts["ft_baseline_epochs"] = int(baseline["epochs"].max())
    facts["ft_continued_epochs"] = int(runs.loc[runs["label"] != "baseline", "epochs"].max())
    facts["ft_train_images"] = f"{int(baseline['train_subset'].iloc[0]):,}"
    adjoint = runs[runs["label"] == "adjoint"].iloc[0]
    facts.update(ft_adjoint_lr=float(adjoint["lr"]), ft_adjoint_tol=float(adjoint["rtol"]),
                 ft_adjoint_milestones=str(adjoint["lr_milestones"]).replace(",", "/"),
                 ft_rk_tol=float(runs.loc[runs["label"] == "rk", "rtol"].iloc[0]))
    facts["ft_baseline_train"] = float(baseline["train_acc"].mean() * 100)
    work = {arm: by_seed(runs, arm, "nfe_forward") + by_seed(runs, arm, "nfe_backward") for arm in
            ("adjoint", "adjoint-libtol")}
    facts["ft_libtol_nfe_ratio"] = float((work["adjoint-libtol"] / work["adjoint"]).mean())
    start = by_seed(runs, "baseline", "val_acc")
    for label in ("adjoint", "fc-sgd"):  # how far the first epoch of SGD at 0.1 falls below the checkpoint
        first = histories[(histories["label"] == label) & (histories["epoch"] == 1)].set_index("seed")["val_acc"]
        drop = (start - first).dropna() * 100
        key = f"ft_{label.replace('-', '_')}_first_drop"
        facts.update({f"{key}_min": float(drop.min()), f"{key}_max": float(drop.max())})
    for a, b in (("rk", "fc-adam"), ("adjoint", "fc-sgd"), ("rk", "baseline")):
        ratios = cost_ratios(runs, a, b)
        key = f"ft_cost_{a}_{b}".replace("-", "_")
        facts[f"{key}_low"], facts[f"{key}_high"] = float(ratios.min()), float(ratios.max())
        facts[f"{key}_seeds"] = ", ".join(map(str, ratios.index))
    return facts


def _heads_facts(runs: pd.DataFrame, histories: pd.DataFrame) -> dict[str, Any]:
    node_seeds = runs.loc[runs["label"] == "node", "seed"]
    means = runs[runs["seed"].isin(node_seeds)].groupby("label")["test_acc"].mean() * 100
    facts: dict[str, Any] = {f"hd_{label.replace('-', '_')}_test": float(value) for label, value in means.items()}
    node = histories[histories["label"] == "node"].sort_values("epoch")
    rises = node.groupby("seed")["train_loss"].apply(lambda loss: int((loss.diff() > 0).sum()))
    facts.update(hd_node_seeds=len(node_seeds), hd_node_rises_min=int(rises.min()), hd_node_rises_max=int(rises.max()),
                 hd_node_changes=int(node["epoch"].max() - 1),
                 hd_node_nfe_first=float(node.loc[node["epoch"] == 1, "nfe_forward"].mean()),
                 hd_node_nfe_last=float(node.loc[node["epoch"] == node["epoch"].max(), "nfe_forward"].mean()))
    seconds = runs.groupby("label")["seconds_per_epoch"]
    facts.update(hd_node_seconds_min=float(seconds.min()["node"]), hd_node_seconds_max=float(seconds.max()["node"]),
                 hd_mlp_seconds_max=float(seconds.max()["mlp"]))
    ordered = histories.sort_values("epoch").groupby(["label", "seed"])["train_loss"]
    falling = ordered.apply(lambda loss: bool((np.diff(loss.tail(5)) < 0).all())).groupby("label").all()
    last = ordered.last().groupby("label").mean()
    facts.update(hd_fc_train_final=float(last["fc"]), hd_mlp_train_final=float(last["mlp"]),
                 hd_fc_still_falling="still falling in every seed over its last five epochs: at this learning rate it "
                 "has not converged" if falling["fc"] else "levelling off over its last five epochs")
    converged = runs[runs["label"] == "fc-converged"]  # the linear probe trained until its val loss stops falling
    if len(converged):
        facts.update(hd_converged_seeds=", ".join(map(str, sorted(converged["seed"]))),
                     hd_converged_epochs_min=int(converged["epochs"].min()),
                     hd_converged_epochs_max=int(converged["epochs"].max()),
                     hd_converged_gain=float((by_seed(runs, "fc-converged", "test_acc")
                                              - by_seed(runs, "fc", "test_acc")).dropna().mean() * 100))
    adjoint = runs[runs["label"] == "node-adjoint"]
    facts["hd_adjoint_seeds"] = len(adjoint)
    facts["hd_adjoint_max_seed"] = int(adjoint.loc[adjoint["nfe_forward"].idxmax(), "seed"])
    for column in ("nfe_forward", "nfe_backward"):
        facts[f"hd_adjoint_{column}_median"] = float(adjoint[column].median())
        facts[f"hd_adjoint_{column}_max"] = float(adjoint[column].max())
    facts["hd_adjoint_test"] = float(adjoint["test_acc"].mean() * 100)
    return facts


def reproducing_facts(data: StudyData, table: pd.DataFrame, results: str | Path | None = None) -> dict[str, Any]:
    """Every number and phrase the reproducing chapter's prose states, by the name it glues it under (with
    `results`, also what has not finished and what a NODE epoch costs, from `results/bench`)."""
    labels = primary(table)["verdict_holm"]
    facts: dict[str, Any] = {
        "primary_tests": len(labels), "margin": statistic("test_acc").minimum * 100,
        "stability_relative": statistic("val_loss_fluctuation").relative * 100,
        "stability_floor": statistic("val_loss_fluctuation").loss_floor * 100, "min_window": MIN_WINDOW,
        "regimes": " and ".join(regime.title for regime in data), "regime_count": len(data),
        "ladder": ", ".join(f"{drop * 100:g}" for drop in LADDER[:-1]) + f" or {LADDER[-1] * 100:g}",
        "paper_epochs": f"{PAPER['baseline']['epochs']} + {PAPER['rk']['epochs']} / {PAPER['adjoint']['epochs']}",
        "tests_total": len(table), "tests_exploratory": int((table["role"] == "exploratory").sum()),
        "tests_paper": int((table["role"] == "paper").sum()),
        "overfits_rows": int((table["verdict"] == "overfits more slowly").sum()),
        "confounds_paper": confound_kinds(" ".join(table.loc[table["role"] == "paper", "confound"])),
        "pairing_r": "from {:+.2f} to {:+.2f}".format(*primary(table)["correlation"].agg(["min", "max"])),
        "pairing_helps": int((primary(table)["correlation"] > 0).sum()),
    }
    finetune, heads = regime_data(data, "paper"), regime_data(data, "heads")
    if len(finetune[0]):
        facts.update(_finetune_facts(*finetune))
        recorded = seeds_on_one_cpu_model(finetune[0])
        facts["ft_one_cpu_seeds"] = spans(recorded) or "none"
        facts["ft_adjoint_plan"] = adjoint_seed_plan(table, next(regime for regime in data if regime.suite == "paper"))
        facts["ft_adjoint_cap"] = ADJOINT_SEEDS_CAP
        facts["ft_unrecorded_seeds"] = spans(set(finetune[0]["seed"]) - recorded) or "none"
        facts["ft_arm_seeds"] = seeds_by_configuration(finetune[0], recorded)
    if len(heads[0]):
        facts.update(_heads_facts(*heads))
        recorded = sorted(seeds_on_one_cpu_model(heads[0]))
        facts["hd_one_cpu_seeds"] = (seed_spans(recorded) if recorded else
                                     "none: every seed there has runs made before the model was recorded")
    overfit = regime_data(data, "overfit")
    if len(overfit[0]):
        directory = next(regime.directory for regime in data if regime.suite == "overfit")
        planned = int(suite_progress(Path(results) / directory)["seeds planned"].max()) if results is not None \
            else int(overfit[0]["seed"].nunique())
        facts.update(overfit_facts(*overfit, planned))
    reach = target_reach(data)
    arms = {(regime.title, label) for regime in data for label in regime.primary_arms()}
    facts["paper_target_reach"] = ", ".join(f"{label} {text}" for (title, label), text in reach.items()
                                            if (title, label) in arms)
    seeds = [runs.groupby("label")["seed"].nunique() for runs, _ in data.values()]
    facts["seeds_min"], facts["seeds_max"] = int(min(s.min() for s in seeds)), int(max(s.max() for s in seeds))
    cpus = pd.concat([runs["cpu"] for runs, _ in data.values()])
    facts["cpu_models"] = ", ".join(sorted(cpus.dropna().unique())) or "none recorded"
    facts["cpu_unrecorded"] = int(cpus.isna().sum())
    facts["runs_total"] = len(cpus)
    if results is not None:
        facts["not_finished"] = not_finished(results, data)
        facts.update(chapter_cost_facts(Path(results) / "bench"))  # a NODE epoch's cost, from one session
    return facts


def discrepancy_table(facts: dict[str, Any], table: pd.DataFrame) -> pd.DataFrame:
    """The paper's numbers against ours, each with its most likely cause."""
    def find(a: str, b: str, name: str) -> pd.Series:
        rows = table[(table["a"] == a) & (table["b"] == b) & (table["name"] == name)]
        return rows.iloc[0]

    rk_base, adj_rk = find("rk", "baseline", "test_acc"), find("adjoint", "rk", "val_acc")
    rk_fc = find("rk", "fc-adam", "test_acc")
    stability = primary(table)[primary(table)["name"].map(lambda name: statistic(name).kind == "stability")]
    control = (f"the matched FC control, trained on the same way, lands {rk_fc['difference']:+.2f} points from rk "
               f"({rk_fc['verdict_holm'] or rk_fc['verdict']})")
    rows = [
        ("baseline test accuracy", f"{PAPER['baseline']['test'] * 100:.0f} % (CIFAR-10, B0)",
         f"{facts['ft_baseline_test']:.2f} % (Fashion-MNIST, Lite0)",
         "another data set and backbone: the numbers are not comparable, only the comparisons between models"),
        ("baseline train accuracy", f"{PAPER['baseline']['train'] * 100:.1f} %", f"{facts['ft_baseline_train']:.1f} %",
         f"{facts['ft_baseline_epochs']} epochs on {facts['ft_train_images']} images, against the paper's "
         f"{PAPER['baseline']['epochs']}: far from memorising the training set"),
        ("NODE test accuracy against the baseline", "equal (81 % for all three)",
         f"rk {rk_base['difference']:+.2f} [{rk_base['ci_low']:+.2f}, {rk_base['ci_high']:+.2f}] points",
         "the NODE arms restart from the baseline's best checkpoint at a learning rate well above the baseline's "
         "annealed end and have "
         f"{facts['ft_continued_epochs']} epochs to recover; {control}"),
        ("the NODE arms reach the baseline's validation accuracy", "yes (training stopped there)",
         f"{facts['paper_target_reach']} seeds", "the target is the baseline's best epoch at the end of its annealed "
         "schedule; continued training at a constant or stepped rate does not get back to it within the budget"),
        ("adjoint against rk, best validation accuracy", f"{(PAPER['adjoint']['val'] - PAPER['rk']['val']) * 100:+.1f} "
         "points", f"{adj_rk['difference']:+.2f} [{adj_rk['ci_low']:+.2f}, {adj_rk['ci_high']:+.2f}] points",
         f"SGD at learning rate 0.1 first knocks the fine-tuned network {facts['ft_adjoint_first_drop_min']:.0f}-"
         f"{facts['ft_adjoint_first_drop_max']:.0f} points below its checkpoint; the paper's runs are single and "
         "used other frameworks"),
        ("epochs", " / ".join(str(PAPER[m]["epochs"]) for m in ("baseline", "rk", "adjoint")),
         f"{facts['ft_baseline_epochs']} / {facts['ft_continued_epochs']} / {facts['ft_continued_epochs']}",
         "the budget of two CPU cores"),
        ("'more stable'", "yes, from single curves, no statistic", "against the matched controls: " + "; ".join(
            f"{r.a} vs {r.b}: {r.verdict_holm}" for r in stability.itertuples()),
         "the paper's comparison sets the NODE arms (constant or stepped rate) against the baseline's annealed end"),
    ]
    return pd.DataFrame(rows, columns=["what", "paper", "ours", "most likely cause"])


def primary_regimes(data: StudyData) -> list[Regime]:
    """The regimes with at least one primary test, in study order."""
    return [regime for regime in data if regime.primary()]


def page_facts(results: str | Path) -> dict[str, Any]:
    """Every name the reproducing chapter glues from this module (`pages.PAGES`), from the committed results."""
    data = load_study(results)
    return reproducing_facts(data, study_table(data), results)

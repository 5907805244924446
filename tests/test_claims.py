"""The declared tests and their verdicts: labels checked against the suites, confounds found from the runs, the
overfitting rule, Holm over the primary family, censored convergence, and the committed answer."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from node_transfer.analysis.claims import FINETUNE_TESTS, HEAD_TESTS, STUDIES, Regime, study_of
from node_transfer.analysis.confounds import confounds
from node_transfer.analysis.convergence import choose_target, first_reach, times_to_target
from node_transfer.analysis.endpoints import PRIMARY_STABILITY, Endpoint
from node_transfer.analysis.paired import FAILS, HOLDS, paired_compare, verdict
from node_transfer.analysis.verdicts import Options, compare, family_table, paired_seeds, regime_table
from node_transfer.core.errors import ConfigError
from node_transfer.suites.registry import get_suite

FINETUNE = Regime("synthetic", "synthetic, fine-tune", "paper", "cpu", "synthetic", FINETUNE_TESTS)
HEADS = Regime("synthetic-heads", "synthetic, head-only", "heads", "cpu", "synthetic-heads", HEAD_TESTS)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_every_declared_label_is_a_configuration_of_its_suite(study):
    for regime in STUDIES[study].regimes:
        labels = {run.label for run in get_suite(regime.suite, regime.profile)}
        for test in regime.tests:
            assert {test.a, test.b} <= labels, f"{regime.key}: {test.wording()} names a label not in the suite"
        assert study_of(regime.suite, regime.profile)[1] == regime


def test_the_primary_family_is_one_accuracy_and_one_stability_test_per_node_model():
    for regime in (FINETUNE, HEADS):
        primary = regime.primary()
        arms = {test.a for test in primary}
        assert sorted(test.statistic for test in primary) == sorted(["test_acc", PRIMARY_STABILITY] * len(arms))
        assert all(test.kind == ("same" if test.statistic == "test_acc" else "better") for test in primary)
    with pytest.raises(ConfigError, match="statistic"):
        Endpoint(1, "rk", "fc-adam", "val_loss_wobble")
    with pytest.raises(ConfigError, match="role"):
        Endpoint(1, "rk", "fc-adam", "test_acc", "main")


def synthetic_suite(wobble: dict[str, float], accs: dict[str, float], seeds: int = 5, epochs: int = 8,
                    train_wobble: dict[str, float] | None = None, lr: dict[str, list[float]] | None = None,
                    final_train: dict[str, float] | None = None):
    """Runs and histories: label -> size of the zig-zag of the validation loss late in training (around a steady
    descent), test accuracy; optionally the training loss's zig-zag, the learning rate per epoch, and where the
    training loss ends."""
    rng = np.random.default_rng(0)
    runs, histories = [], []
    for label in wobble:
        continued = label != "baseline"
        for seed in range(seeds):
            zigzag = (-1.0) ** np.arange(epochs) * (1 + 0.1 * seed)
            loss = np.linspace(1.0, 0.3, epochs) + wobble[label] * zigzag
            train_end = (final_train or {}).get(label, 0.2)
            train = np.linspace(0.9, train_end, epochs) + (train_wobble or {}).get(label, 0.0) * zigzag
            acc = np.linspace(0.80, 0.90, epochs)
            histories.append(pd.DataFrame({"epoch": range(1, epochs + 1), "val_loss": loss, "val_acc": acc,
                                           "train_loss": train, "lr": (lr or {}).get(label, [3e-4] * epochs),
                                           "seconds": 10.0, "label": label, "seed": seed}))
            runs.append({"label": label, "seed": seed, "group": label, "test_acc": accs[label] + rng.normal(0, 5e-4),
                         "val_acc": 0.95 if label == "baseline" else acc.max(), "test_nll": 0.3, "test_ece": 0.02,
                         "init_from": f"x/baseline-s{seed}" if continued else "", "optimizer": "adam", "lr": 3e-4,
                         "stopped_early": False, "epochs": epochs})
    return pd.DataFrame(runs), pd.concat(histories, ignore_index=True)


def table_of(runs, histories, regime=FINETUNE, options=None):
    return family_table({regime: (runs, histories)}, options or Options()).set_index("test")


def test_matched_controls_are_primary_and_the_ode_is_judged_by_them():
    labels = ["baseline", "rk", "adjoint", "fc-adam", "fc-sgd", "mlp", "euler", "node-sgd-backprop"]
    # rk wobbles far less than the baseline, and exactly as little as FC trained on: continued training, not the ODE
    wobble = dict.fromkeys(labels, 0.0) | {"baseline": 0.05, "adjoint": 0.05, "fc-sgd": 0.05, "node-sgd-backprop": 0.05}
    accs = dict.fromkeys(labels, 0.90) | {"adjoint": 0.85}
    table = table_of(*synthetic_suite(wobble, accs))
    assert table.loc["rk: steadier than fc-adam (val-loss fluctuation)", "role"] == "primary"
    assert table.loc["rk: steadier than fc-adam (val-loss fluctuation)", "verdict_holm"] == "does not hold"
    assert table.loc["rk: same test accuracy as fc-adam", "verdict_holm"] == "holds"
    assert table.loc["adjoint: same test accuracy as fc-sgd", "verdict_holm"] == "does not hold"
    paper = table.loc["rk: steadier than baseline (val-loss fluctuation)"]
    assert paper["role"] == "paper" and paper["verdict"] == "holds" and paper["verdict_holm"] == ""
    assert paper["confound"] == "rk is baseline trained further"
    assert (table["role"] == "primary").sum() == 4 and table["p_holm"].notna().sum() == 4


def test_a_comparison_at_different_learning_rates_is_confounded_and_never_primary():
    stepped = [0.1, 0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3, 1e-4]
    runs, histories = synthetic_suite({"rk": 0.0, "fc-adam": 0.02}, {"rk": 0.9, "fc-adam": 0.9},
                                      lr={"fc-adam": stepped})
    row = table_of(runs, histories).loc["rk: steadier than fc-adam (val-loss fluctuation)"]
    assert row["role"] == "exploratory" and row["verdict_holm"] == ""  # declared primary, demoted by the data
    assert row["confound"] == "learning rate in the window rk 0.0003, fc-adam 0.01 → 0.0001"
    assert confounds(runs, histories, "rk", "fc-adam", [0, 1], 0) == ""  # the configurations alone look matched


def test_a_steadier_validation_loss_with_a_worse_training_fit_overfits_more_slowly():
    runs, histories = synthetic_suite({"node": 0.0, "mlp": 0.03}, {"node": 0.9, "mlp": 0.9},
                                      final_train={"node": 0.3, "mlp": 0.15})
    table = table_of(runs, histories, HEADS)
    row = table.loc["node: steadier than mlp (val-loss fluctuation)"]
    assert row["verdict"] == row["verdict_holm"] == "overfits more slowly"
    assert row["note"].startswith("node's final training loss is higher than mlp's by 0.150")
    fits = table_of(*synthetic_suite({"node": 0.0, "mlp": 0.03}, {"node": 0.9, "mlp": 0.9}), HEADS)
    assert fits.loc["node: steadier than mlp (val-loss fluctuation)", "verdict"] == "holds"
    # the training-loss statistic is never relabelled: it is the fit itself
    assert table.loc["node: steadier than mlp (train-loss fluctuation)", "verdict"] != "overfits more slowly"


def test_the_common_window_is_set_from_the_paired_seeds_only():
    runs, histories = synthetic_suite({"rk": 0.0, "fc-adam": 0.0}, {"rk": 0.9, "fc-adam": 0.9}, epochs=8)
    short = histories[(histories["label"] == "rk") & (histories["seed"] == 0)].iloc[:3].assign(seed=9)
    histories = pd.concat([histories, short], ignore_index=True)  # an unpaired 3-epoch rk run (seed 9)
    runs = pd.concat([runs, runs.iloc[[0]].assign(label="rk", seed=9)], ignore_index=True)
    assert compare(runs, histories, "rk", "fc-adam", "val_loss_fluctuation").details["window"] == 4  # not 1


def test_a_run_stopped_within_two_epochs_leaves_its_seed_out_of_curve_tests_only():
    runs, histories = synthetic_suite({"rk": 0.02, "fc-adam": 0.02}, {"rk": 0.9, "fc-adam": 0.9}, epochs=8)
    stopped = (histories["label"] == "rk") & (histories["seed"] == 2) & (histories["epoch"] > 2)
    histories = histories[~stopped]  # rk seed 2 reached its target after 2 epochs: a window of one change
    result = compare(runs, histories, "rk", "fc-adam", "val_loss_fluctuation")
    assert result.seeds == [0, 1, 3, 4] and result.details["window"] == 4  # the others keep their own window
    assert "seed 2 left out" in result.details["note"]
    assert compare(runs, histories, "rk", "fc-adam", "test_acc").seeds == [0, 1, 2, 3, 4]


def test_seed_filters_and_dropped_early_stops_leave_seeds_out():
    runs, histories = synthetic_suite({"rk": 0.0, "fc-adam": 0.0}, {"rk": 0.9, "fc-adam": 0.9})
    runs.loc[(runs["label"] == "fc-adam") & (runs["seed"] == 1), "stopped_early"] = True
    assert paired_seeds(runs, "rk", "fc-adam") == [0, 1, 2, 3, 4]
    assert paired_seeds(runs, "rk", "fc-adam", Options(drop_early_stopped=True)) == [0, 2, 3, 4]
    only = Options(seed_filter=lambda frame: {3, 4})
    assert paired_seeds(runs, "rk", "fc-adam", only) == [3, 4]
    assert table_of(runs, histories, options=only).loc["rk: same test accuracy as fc-adam", "seeds"] == "3, 4"


def test_a_regime_that_needs_recorded_machines_tests_only_seeds_made_on_one_cpu_model():
    runs, histories = synthetic_suite({"rk": 0.0, "fc-adam": 0.0}, {"rk": 0.9, "fc-adam": 0.9})
    runs["cpu"] = runs["seed"].map({0: None, 1: "Xeon", 2: "EPYC", 3: "EPYC", 4: "EPYC"})
    runs.loc[(runs["label"] == "fc-adam") & (runs["seed"] == 3), "cpu"] = "Xeon"  # seed 3 mixes two models
    ruled = replace(FINETUNE, recorded_seeds_only=True)
    test = "rk: same test accuracy as fc-adam"
    assert table_of(runs, histories, ruled).loc[test, "seeds"] == "1, 2, 4"
    assert table_of(runs, histories, ruled, Options(regime_seed_rules=False)).loc[test, "seeds"] == "0, 1, 2, 3, 4"
    assert table_of(runs, histories, FINETUNE).loc[test, "seeds"] == "0, 1, 2, 3, 4"  # no rule: every seed
    only = Options(seed_filter=lambda frame: {0, 1, 2})  # a scenario's filter and the rule both apply
    assert table_of(runs, histories, ruled, only).loc[test, "seeds"] == "1, 2"
    declared = {regime.key: regime.recorded_seeds_only for regime in STUDIES["fashion-mnist"].regimes}
    assert declared == {"fmnist-finetune": True, "fmnist-heads": False, "fmnist-overfit": True}


def test_convergence_targets_are_reachable_by_the_control_and_censor_the_rest():
    runs, histories = synthetic_suite({"baseline": 0.0, "rk": 0.0, "fc-adam": 0.0},
                                      {"baseline": 0.9, "rk": 0.9, "fc-adam": 0.9})
    target = choose_target(runs, histories, "rk", "fc-adam", [0, 1, 2, 3, 4])
    # both start from the baseline (val acc 0.95); the curves reach 0.90: a drop of 5 points is the first reached
    assert target.drop == 0.05 and target.control_reached == 5 and "baseline" in target.reference
    history = histories[(histories["label"] == "rk") & (histories["seed"] == 0)]
    assert first_reach(history, 0.85) == (5.0, 50.0, True)
    assert first_reach(history, 0.99) == (8.0, 80.0, False)  # censored at its budget, not dropped
    slow = histories.assign(val_acc=np.where(histories["label"] == "rk", 0.5, histories["val_acc"]))
    times = times_to_target(slow, "rk", target.values)
    assert len(times) == 5 and not times["reached"].any() and (times["epochs"] == 8).all()
    row = table_of(runs, slow).loc["rk: quicker to the target than fc-adam"]
    assert row["reached_a"] == 0 and row["reached_b"] == 5 and row["verdict"] == "does not hold"
    no_start = choose_target(runs[runs["label"] != "baseline"], histories, "rk", "fc-adam", [0, 1])
    assert no_start.reference == "fc-adam's best validation accuracy" and no_start.drop == 0.005


def test_regimes_without_runs_for_a_label_leave_its_tests_out():
    runs, histories = synthetic_suite({"rk": 0.0, "fc-adam": 0.0}, {"rk": 0.9, "fc-adam": 0.9})
    table = regime_table(runs, histories, FINETUNE)
    assert set(table["b"]) == {"fc-adam"} and len(table) == 1 + 4 + 1  # accuracy, 4 stability, speed


def _two_arms(epochs_a: dict[int, int], epochs_b: dict[int, int], wobble: float = 0.02) -> tuple:
    """Runs and histories of two arms whose validation loss wobbles around a plateau; run lengths per seed given."""
    rng = np.random.default_rng(3)
    rows, runs = [], []
    for label, lengths in (("rk", epochs_a), ("fc-adam", epochs_b)):
        for seed, epochs in lengths.items():
            loss = 0.3 + wobble * rng.standard_normal(epochs)
            rows += [{"label": label, "seed": seed, "epoch": e + 1, "val_loss": loss[e], "train_loss": 0.1,
                      "val_acc": 0.9, "seconds": 1.0, "lr": 1e-3} for e in range(epochs)]
            runs.append({"label": label, "seed": seed, "test_acc": 0.9, "val_acc": 0.9, "optimizer": "adam"})
    return pd.DataFrame(runs), pd.DataFrame(rows)


def test_an_early_stopped_seed_changes_only_its_own_pairs_window():
    runs, histories = _two_arms({0: 20, 1: 20, 2: 20}, {0: 20, 1: 20, 2: 20})
    full = compare(runs, histories, "rk", "fc-adam", "val_loss_fluctuation")
    assert full.details["windows"] == {0: 10, 1: 10, 2: 10}
    stopped = histories[~((histories["label"] == "rk") & (histories["seed"] == 1) & (histories["epoch"] > 9))]
    result = compare(runs, stopped, "rk", "fc-adam", "val_loss_fluctuation")
    assert result.details["windows"] == {0: 10, 1: 5, 2: 10}  # seed 1 judged over its own 5 changes
    assert result.differences[0] == full.differences[0] and result.differences[2] == full.differences[2]
    too_short = histories[~((histories["label"] == "rk") & (histories["seed"] == 1) & (histories["epoch"] > 6))]
    left_out = compare(runs, too_short, "rk", "fc-adam", "val_loss_fluctuation")
    assert left_out.seeds == [0, 2] and "seed 1 left out" in left_out.details["note"]  # 3 changes < MIN_WINDOW


def test_the_stability_margin_is_one_rule_for_both_directions():
    # the control wobbles 0.02; the NODE arm 0.019: about 5 % steadier, far less than the 25 % margin
    runs, histories = _two_arms({s: 30 for s in range(6)}, {s: 30 for s in range(6)})
    result = compare(runs, histories, "rk", "fc-adam", "val_loss_fluctuation")
    assert result.margin == pytest.approx(0.25 * result.mean_b)  # a quarter of the control, nothing else
    assert result.floor == pytest.approx(0.01 * 0.3, rel=0.05)  # the loss floor guards "holds" alone
    tiny = paired_compare(pd.Series([0.0010] * 5) + np.linspace(0, 1e-5, 5), pd.Series([0.0012] * 5),
                          higher_is_better=False, margin=0.25 * 0.0012, floor=0.003)
    assert tiny.advantage < tiny.margin and verdict(tiny, "better") == FAILS  # ruled out by the margin alone
    big = paired_compare(pd.Series([0.0004] * 5) + np.linspace(0, 1e-5, 5), pd.Series([0.0012] * 5),
                         higher_is_better=False, margin=0.25 * 0.0012, floor=0.003)
    assert big.advantage > big.margin and verdict(big, "better") != HOLDS  # a real gain below the loss floor


def test_the_declared_quicker_target_decides_on_made_up_curves():
    epochs = np.arange(1, 41)
    slow = 0.80 + 0.08 * (1 - np.exp(-epochs / 6))  # the control: rises over about 10 epochs
    rows, runs = [], []
    for seed in range(5):
        for label, curve in (("rk-imagenet", 0.80 + 0.08 * (1 - np.exp(-epochs / 2))), ("baseline", slow)):
            acc = curve + 0.001 * seed
            rows += [{"label": label, "seed": seed, "epoch": int(e), "val_acc": float(a), "val_loss": 0.4,
                      "train_loss": 0.1, "seconds": 10.0, "lr": 1e-3} for e, a in zip(epochs, acc)]
            runs.append({"label": label, "seed": seed, "optimizer": "adam"})
    runs, histories = pd.DataFrame(runs), pd.DataFrame(rows)
    early = compare(runs, histories, "rk-imagenet", "baseline", "val_acc_early_mean")
    assert early.mean_diff > 0.01 and verdict(early, "better") == HOLDS  # quicker by more than 0.5 points
    epochs_to = compare(runs, histories, "rk-imagenet", "baseline", "epochs_to_rising_target")
    assert epochs_to.mean_diff < -1 and verdict(epochs_to, "better") == HOLDS
    same = compare(runs, histories.assign(label=histories["label"].replace("rk-imagenet", "x")).pipe(
        lambda h: pd.concat([h, h[h["label"] == "baseline"].assign(label="rk-imagenet")])), "rk-imagenet",
        "baseline", "val_acc_early_mean")
    assert verdict(same, "better") == FAILS  # identical curves: not quicker


def test_a_confirmation_is_judged_only_on_runs_started_after_its_declaration():
    from datetime import datetime, timezone

    from node_transfer.analysis.claims import CONFIRMATIONS
    from node_transfer.analysis.preregistration import regime_of, runs_not_after

    declared = datetime(2026, 12, 7, 5, 0, tzinfo=timezone.utc)
    runs = pd.DataFrame({"label": ["rk", "fc-adam", "baseline"], "seed": [5, 5, 5],
                         "started_at": [datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc),
                                        datetime(2026, 12, 7, 4, 0, tzinfo=timezone.utc), None]})
    assert runs_not_after(runs, declared) == ["fc-adam-s5", "baseline-s5"]  # older, and undated
    assert runs_not_after(runs.iloc[:1], declared) == [] and runs_not_after(runs.iloc[:1], None) == ["rk-s5"]
    # new seeds only: none of its regime's exploratory seeds (a new study's regime has none, every seed is new)
    assert all(set(c.seeds).isdisjoint(regime_of(c).seeds or ()) for c in CONFIRMATIONS.values())


def test_every_committed_confirmatory_run_started_after_its_declaration():
    from node_transfer.analysis.claims import CONFIRMATIONS
    from node_transfer.analysis.preregistration import confirmation_status, regime_of
    from node_transfer.suites.notebooks import results_dir

    for confirmation in CONFIRMATIONS.values():
        status = confirmation_status(results_dir(), confirmation)
        if status["finished"] and status["declared"] is None:
            pytest.skip("git cannot date the declaration here (no history, or a shallow clone)")
        assert status["early"] == [], f"{confirmation.key}: runs that started before the declaration"
        assert not status["finished"] or (status["table"]["n"] > 0).any()  # its runs are read, CPU records and all
        arms = {label for test in regime_of(confirmation).primary() for label in (test.a, test.b)}
        assert status["planned"] == len(arms) * len(confirmation.seeds)  # the regime's primary arms, each seed


def test_a_confirmation_with_runs_still_to_come_calls_its_labels_interim():
    from datetime import datetime, timezone

    from node_transfer.analysis.claims import CONFIRMATIONS
    from node_transfer.analysis.preregistration import declaration_sentence

    confirmation = next(iter(CONFIRMATIONS.values()))
    status = {"commit": "abc1234", "declared": datetime(2026, 12, 7, 3, 15, tzinfo=timezone.utc), "early": []}
    interim = declaration_sentence(confirmation, {**status, "planned": 30, "finished": 12})
    assert "12 of its 30 runs are in: until all are, its labels are interim readings" in interim
    assert "interim" not in declaration_sentence(confirmation, {**status, "planned": 30, "finished": 30})
    assert "interim" not in declaration_sentence(confirmation, {**status, "planned": 30, "finished": 0})


def test_a_finished_confirmation_is_read_against_the_exploratory_seeds_and_pooled():
    from node_transfer.analysis.claims import ANSWER_STUDY, CONFIRMATIONS, STUDIES
    from node_transfer.analysis.preregistration import confirmation_markdown, confirmation_status
    from node_transfer.suites.notebooks import results_dir

    regimes = {regime.key for regime in STUDIES[ANSWER_STUDY].regimes}
    text = confirmation_markdown(results_dir())
    for confirmation in (c for c in CONFIRMATIONS.values() if c.regime in regimes):
        status = confirmation_status(results_dir(), confirmation)
        tests = status["table"][status["table"]["role"] == "primary"] if len(status["table"]) else []
        if not len(tests) or not (tests["n"] >= 2).any():
            continue
        own = text.split(f"**{confirmation.key}**", 1)[1].split("\n\n", 1)[0]
        readings = own.split("Against the exploratory seeds: ", 1)[1].split(" Pooled, every seed: ")
        # each primary test: its exploratory label and interval beside the confirmation's, then every seed pooled
        assert readings[0].count("on the exploratory seeds") == len(tests)
        assert readings[0].count(" there)") == len(tests) and readings[1].count("**") == 2 * len(tests)


def test_the_forest_plot_puts_the_node_better_to_the_right_in_minimum_effects():
    from node_transfer.pages.forest import forest_rows

    def row(name, difference, low, high, margin, role="primary", label="undecided"):
        return {"regime": "r", "claim": 1, "role": role, "name": name, "a": "rk", "b": "fc-adam",
                "difference": difference, "ci_low": low, "ci_high": high, "minimum_effect": margin,
                "verdict_holm": label}
    table = pd.DataFrame([row("test_acc", 0.25, -0.1, 0.6, 0.5),  # accuracy: higher is better
                          row("val_loss_fluctuation", -0.002, -0.003, -0.001, 0.001),  # lower is steadier
                          row("test_acc", -1.0, -1.5, -0.5, 0.5, role="paper")])
    rows = forest_rows(table)
    assert list(rows["advantage"]) == pytest.approx([0.5, 2.0, -2.0])
    assert list(rows["low"]) == pytest.approx([-0.2, 1.0, -3.0])
    assert list(rows["high"]) == pytest.approx([1.2, 3.0, -1.0])
    assert list(rows["role"]) == ["primary", "primary", "paper"]  # the paper's own beneath its regime's tests


def test_a_head_whose_accuracy_moves_with_the_solver_is_not_an_ode():
    from node_transfer.analysis.claims import STUDIES
    from node_transfer.analysis.ode_behaviour import solver_swap_sentence, solver_swap_table

    regime = STUDIES["fashion-mnist"].regimes[0]
    runs = pd.DataFrame({"label": ["rk", "rk", "euler", "euler", "fc-adam"], "seed": [0, 1, 0, 1, 0],
                         "solver": ["dopri5", "dopri5", "euler", "euler", "dopri5"],
                         "solver_swap_change": [0.001, -0.002, -0.03, -0.01, None]})
    table = solver_swap_table({regime: (runs, pd.DataFrame())})
    assert list(table["arm"]) == ["rk", "euler"] and list(table["behaves as an ODE"]) == ["yes", "no"]
    assert table.loc[1, "largest change (points)"] == 3.0
    assert "not an ODE by this check: euler" in solver_swap_sentence({regime: (runs, pd.DataFrame())})
    assert "No committed run" in solver_swap_sentence({regime: (runs.drop(columns="solver_swap_change"),
                                                                pd.DataFrame())})


def test_a_regime_with_a_confirmation_keeps_its_new_seeds_apart_until_pooled():
    from node_transfer.analysis.claims import CONFIRMATIONS, STUDIES
    from node_transfer.analysis.preregistration import confirmation_options
    from node_transfer.analysis.verdicts import DECLARED, regime_options

    regime = next(r for r in STUDIES["fashion-mnist"].regimes if r.key == "fmnist-overfit")
    runs = pd.DataFrame({"label": ["rk", "fc-adam"] * 7, "seed": [s for s in range(7) for _ in range(2)],
                         "cpu": "AMD EPYC"})
    confirmation = CONFIRMATIONS["confirm-overfit-fmnist-s5-9"]
    assert paired_seeds(runs, "rk", "fc-adam", regime_options(regime)) == [0, 1, 2, 3, 4]  # exploratory
    assert paired_seeds(runs, "rk", "fc-adam", regime_options(regime, confirmation_options(confirmation))) == [5, 6]
    pooled = regime_options(regime, replace(DECLARED, pool_confirmations=True))
    assert paired_seeds(runs, "rk", "fc-adam", pooled) == list(range(7))
    assert paired_seeds(runs.assign(cpu=[None, None] + ["AMD EPYC"] * 12), "rk", "fc-adam", pooled) == list(range(1, 7))

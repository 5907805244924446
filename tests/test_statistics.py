"""Stability statistics, seed-paired tests and the verdicts built on them, on synthetic runs whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from node_transfer.calibration import CalibrationBins
from node_transfer.statistics import (
    better_verdict,
    common_window,
    paired_compare,
    same_value_verdict,
    stability_statistics,
)
from node_transfer.verdicts import (
    against_reference,
    claims_by_regime,
    compare,
    continued_cost,
    epochs_to_target,
    head_claims,
    paper_claims,
)


def curve(loss, acc=None, train_loss=None):
    acc = acc if acc is not None else [0.5] * len(loss)
    train_loss = train_loss if train_loss is not None else np.linspace(1.0, 0.1, len(loss))  # steady descent
    return pd.DataFrame({"epoch": range(1, len(loss) + 1), "val_loss": loss, "val_acc": acc,
                         "train_loss": train_loss})


def test_steady_descent_and_convergence_are_not_instability():
    descending = stability_statistics(curve([2.0, 1.5, 1.0, 0.6, 0.3, 0.1]))
    plateau = stability_statistics(curve([0.30, 0.30, 0.30, 0.30, 0.30, 0.30]))
    oscillating = stability_statistics(curve([0.5, 0.4, 0.6, 0.4, 0.6, 0.4]))
    assert descending["val_loss_rise"] == 0.0 and plateau["val_loss_rise"] == 0.0
    # the old statistic ranked the steep, steady descent as the least stable of the three
    assert descending["val_loss_tv"] > oscillating["val_loss_tv"] > plateau["val_loss_tv"]
    # epochs 4..6 against their predecessors: 0.6 -> 0.4 falls, 0.4 -> 0.6 rises by 0.2, 0.6 -> 0.4 falls
    assert oscillating["val_loss_rise"] == pytest.approx(0.2 / 3)
    assert oscillating["stability_window"] == 3


def test_overfitting_is_a_validation_rise_and_a_training_blow_up_is_a_training_rise():
    overfitting = stability_statistics(curve([0.6, 0.5, 0.55, 0.6, 0.65, 0.7]))  # training loss still falls
    assert overfitting["val_loss_rise"] == pytest.approx(0.05) and overfitting["train_loss_rise"] == 0.0
    blow_up = stability_statistics(curve([0.6] * 6, train_loss=[0.9, 0.5, 0.36, 0.40, 0.45, 0.51]))
    # the last 3 changes: +0.04, +0.05, +0.06 (the fall into epoch 3 lies before the window)
    assert blow_up["train_loss_rise"] == pytest.approx(0.05) and blow_up["val_loss_rise"] == 0.0


def test_accuracy_drops_and_the_worst_fall_within_the_window():
    stats = stability_statistics(curve([1.0] * 6, [0.5, 0.9, 0.93, 0.507, 0.8, 0.9]), window=3)
    assert stats["val_acc_drop"] == pytest.approx((0.93 - 0.507) / 3)
    assert stats["val_acc_worst_drop"] == pytest.approx(0.93 - 0.507)
    assert np.isnan(stability_statistics(curve([1.0]))["val_loss_rise"])
    assert common_window([30, 30, 8]) == 4 and common_window([1, 30]) == 0


def test_paired_test_sees_a_consistent_difference_that_intervals_miss():
    # seeds differ a lot from each other, but b is 1 point above a on every seed
    a = pd.Series([0.80, 0.90, 0.70, 0.85, 0.75])
    b = a + 0.01 + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])
    result = paired_compare(a, b, "test_acc", ("a", "b"), higher_is_better=True)
    assert result.verdict == "a worse" and result.a_better_in == 0
    assert result.ci_high < 0 < result.p_value < 1e-4
    # unpaired 95% intervals overlap widely: the old verdict would have been "indistinguishable"
    assert abs(a.mean() - b.mean()) < a.std()


def test_equivalence_needs_a_margin_and_evidence():
    a = pd.Series([0.900, 0.910, 0.905, 0.902, 0.908])
    same = a + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])
    result = paired_compare(same, a, "test_acc", margin=0.005)
    assert result.verdict == "equivalent (±0.005)" and same_value_verdict(result) == "holds"
    noisy = a + np.array([0.03, -0.03, 0.02, -0.025, 0.004])
    undecided = paired_compare(noisy, a, "test_acc", margin=0.005)
    assert undecided.verdict == "undecided" and same_value_verdict(undecided) == "undecided"
    far = paired_compare(a - 0.05 + np.array([0.001, 0.0, -0.001, 0.0, 0.0]), a, "test_acc", margin=0.005)
    assert same_value_verdict(far) == "does not hold" and better_verdict(far) == "does not hold"
    one = paired_compare(pd.Series([0.9]), pd.Series([0.8]), margin=0.005)
    assert one.verdict.startswith("undecided") and same_value_verdict(one) == "undecided"
    with pytest.raises(ValueError, match="margin"):
        same_value_verdict(paired_compare(a, a))


def test_seeds_are_paired_by_index_not_position():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([3.1, 1.1, 2.1], index=[2, 0, 1])  # the same seeds, listed in another order
    result = paired_compare(a, b, higher_is_better=False)
    assert result.mean_diff == pytest.approx(-0.1) and result.ci_low == result.ci_high  # identical differences
    assert result.verdict == "a better" and result.n == 3


def synthetic_suite(rises: dict[str, float], accs: dict[str, float], seeds: int = 4, epochs: int = 8,
                    train_rises: dict[str, float] | None = None):
    """Runs and histories: label -> oscillation size of the val loss late in training, and test accuracy
    (`train_rises`: label -> oscillation size of the training loss, none where not given)."""
    train_rises = train_rises or {}
    rng = np.random.default_rng(0)
    runs, histories = [], []
    for label in rises:
        for seed in range(seeds):
            loss = np.linspace(1.0, 0.3, epochs) + rises[label] * (np.arange(epochs) % 2) * (1 + 0.1 * seed)
            acc = np.linspace(0.80, 0.90, epochs) + (0.02 if label == "baseline" else 0.0)
            train_loss = np.linspace(0.9, 0.2, epochs) + train_rises.get(label, 0.0) * (np.arange(epochs) % 2)
            histories.append(pd.DataFrame({"epoch": range(1, epochs + 1), "val_loss": loss, "val_acc": acc,
                                           "train_loss": train_loss, "label": label, "seed": seed}))
            runs.append({"label": label, "seed": seed, "test_acc": accs[label] + rng.normal(0, 0.0005),
                         "val_acc": acc.max(), "test_nll": 0.3, "test_ece": 0.02, "seconds_per_epoch": 1.0,
                         "nfe_forward": 20.0, "nfe_backward": 0.0})
    return pd.DataFrame(runs), pd.concat(histories, ignore_index=True)


def test_paper_claims_against_controls_on_runs_with_a_known_answer():
    labels = ["baseline", "rk", "adjoint", "fc-adam", "fc-sgd", "mlp", "euler", "node-sgd-backprop"]
    # rk is steadier than the baseline but exactly as steady as FC trained on: continued training, not the ODE
    rises = dict.fromkeys(labels, 0.0) | {"baseline": 0.2, "adjoint": 0.3, "fc-sgd": 0.3,
                                          "node-sgd-backprop": 0.3}
    accs = dict.fromkeys(labels, 0.90) | {"adjoint": 0.85}
    runs, histories = synthetic_suite(rises, accs)
    claims = paper_claims(runs, histories).set_index("claim")["verdict"]
    assert claims["rk: more stable than the baseline"] == "holds"
    assert claims["rk: more stable than FC trained on with its recipe"] == "does not hold"  # equal on every seed
    assert claims["rk: same test accuracy as FC trained on with its recipe"] == "holds"
    assert claims["adjoint: same test accuracy as the baseline"] == "does not hold"
    assert claims["adjoint: the most stable model (against rk)"] == "does not hold"
    assert claims["adjoint: more stable than FC trained on with its recipe"] == "does not hold"  # identical
    # the baseline's val accuracy (0.92) is reached at epoch... never by these curves (max 0.90)
    assert epochs_to_target(histories, runs, "rk").isna().all()


def test_head_claims_and_sweeps_use_the_same_paired_machinery():
    runs, histories = synthetic_suite({"fc": 0.0, "mlp": 0.0, "euler": 0.0, "node": 0.3},
                                      {"fc": 0.90, "mlp": 0.91, "euler": 0.90, "node": 0.90})
    claims = head_claims(runs, histories).set_index("claim")["verdict"]
    assert claims["node: same test accuracy as the linear probe"] == "holds"
    assert claims["node: same test accuracy as the parameter-matched MLP"] == "does not hold"
    assert claims["node: more stable than the one Euler step"] == "does not hold"
    assert claims["node: lower test NLL than the linear probe"] == "does not hold"  # identical values
    table = against_reference(runs, histories, "node").set_index("configuration")
    assert table.loc["mlp", "test acc vs ref"] == "better" and table.loc["fc", "val-loss rise vs ref"] == "better"
    assert table.loc["fc", "train-loss rise vs ref"] == "equal on every seed"  # both training losses descend
    assert compare(runs, histories, "node", "fc", "val_loss_rise").n == 4


def test_a_steadier_validation_loss_is_not_taken_for_steadier_training():
    # the adjoint's validation loss rises less than backprop's (it overfits less), but its training loss
    # oscillates: "more stable" holds by one statistic and not by the other, and the table says both
    runs, histories = synthetic_suite({"node": 0.3, "node-adjoint": 0.0}, {"node": 0.90, "node-adjoint": 0.90},
                                      train_rises={"node-adjoint": 0.2})
    claims = head_claims(runs, histories).set_index("claim")
    assert claims.loc["adjoint: more stable than backprop", "verdict"] == "holds"
    assert claims.loc["adjoint: more stable than backprop, by training loss", "verdict"] == "does not hold"
    assert claims.loc["adjoint: more stable than backprop, by training loss", "measured"].startswith(
        "train-loss rise: node-adjoint ")


def test_one_verdict_table_has_a_row_per_claim_and_regime():
    runs, histories = synthetic_suite({"fc": 0.0, "node": 0.3}, {"fc": 0.90, "node": 0.90})
    digits = head_claims(runs, histories)
    fmnist = head_claims(*synthetic_suite({"fc": 0.3, "node": 0.0}, {"fc": 0.90, "node": 0.90}))
    table = claims_by_regime({"digits": digits, "Fashion-MNIST": fmnist, "nothing yet": pd.DataFrame()})
    assert len(table) == len(digits) + len(fmnist) and set(table["regime"]) == {"digits", "Fashion-MNIST"}
    stable = table[table["claim"] == "node: more stable than the linear probe"]
    assert list(stable["regime"]) == ["digits", "Fashion-MNIST"]
    assert list(stable["verdict"]) == ["does not hold", "holds"]
    assert list(table["claim"].drop_duplicates()) == list(digits["claim"])
    assert claims_by_regime({}).columns.tolist() == ["claim", "regime", "against", "measured", "verdict"]


def test_continued_cost_says_how_far_a_continued_run_got():
    runs, histories = synthetic_suite({"baseline": 0.0, "rk": 0.0}, {"baseline": 0.90, "rk": 0.89})
    cost = continued_cost(runs, histories, "rk")
    assert cost["seeds"] == 4 and cost["reached"] == 0 and np.isnan(cost["epochs_to_target"])  # 0.90 < 0.92
    assert cost["time_ratio"] == 1.0 and cost["test_acc"] == pytest.approx(89.0, abs=0.1)
    runs.loc[runs["label"] == "baseline", "val_acc"] = 0.85  # reached once the curve passes 0.85: epoch 5
    assert continued_cost(runs, histories, "rk")["epochs_to_target"] == 5.0


def test_expected_calibration_error_of_known_predictions():
    import torch

    bins = CalibrationBins(bins=10)
    # 4 samples at confidence 0.9 (softmax of two logits), 3 right: |0.75 - 0.9| = 0.15
    logit = float(np.log(0.9 / 0.1))
    logits = torch.tensor([[logit, 0.0]] * 4)
    bins.add(logits, torch.tensor([0, 0, 0, 1]))
    assert bins.ece() == pytest.approx(0.15, abs=1e-6)
    bins.add(torch.tensor([[0.0, 0.0]] * 4), torch.tensor([0, 1, 0, 1]))  # confidence 0.5, accuracy 0.5
    assert bins.ece() == pytest.approx(0.075, abs=1e-6)
    assert np.isnan(CalibrationBins().ece())


def test_worst_fall_names_the_seed_and_epoch():
    from node_transfer.verdicts import worst_fall

    histories = pd.concat([
        pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.90, 0.931, 0.507], "label": "adjoint", "seed": 1}),
        pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.90, 0.88, 0.95], "label": "adjoint", "seed": 0}),
    ])
    assert worst_fall(histories, "adjoint") == pytest.approx({"seed": 1, "epoch": 3, "before": 0.931,
                                                              "after": 0.507, "fall": 0.424})


def test_a_fall_from_the_starting_checkpoint_counts_and_identical_runs_are_equal():
    from node_transfer.verdicts import worst_fall

    histories = pd.DataFrame({"epoch": [1, 2, 3], "val_acc": [0.194, 0.882, 0.972], "label": "adjoint", "seed": 0})
    assert worst_fall(histories, "adjoint")["fall"] == 0.0  # within the run it only climbs
    fall = worst_fall(histories, "adjoint", start=pd.Series({0: 0.993}))
    assert fall == pytest.approx({"seed": 0, "epoch": 1, "before": 0.993, "after": 0.194, "fall": 0.799})
    same = paired_compare(pd.Series([0.0, 0.0, 0.0]), pd.Series([0.0, 0.0, 0.0]), higher_is_better=False,
                          margin=0.005)
    assert same.verdict == "equal on every seed"
    assert better_verdict(same) == "does not hold" and same_value_verdict(same) == "holds"

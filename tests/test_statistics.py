"""The statistics registry, the stability statistics, seed-paired tests, the four labels and Holm's correction, on
synthetic runs whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from node_transfer.calibration import CalibrationBins
from node_transfer.errors import ConfigError
from node_transfer.paired import (
    FAILS,
    HOLDS,
    UNDECIDED,
    claim_p_values,
    holm,
    not_shown,
    paired_compare,
    verdict,
)
from node_transfer.statistics import (
    STATISTICS,
    common_window,
    names,
    stability_statistics,
    statistic,
    trend_residual_sd,
)


def curve(loss, acc=None, train_loss=None):
    acc = acc if acc is not None else [0.5] * len(loss)
    train_loss = train_loss if train_loss is not None else np.linspace(1.0, 0.1, len(loss))  # steady descent
    return pd.DataFrame({"epoch": range(1, len(loss) + 1), "val_loss": loss, "val_acc": acc,
                         "train_loss": train_loss})


def test_the_registry_is_the_one_place_statistics_are_described():
    assert statistic("test_acc").higher_is_better and not statistic("val_loss_fluctuation").higher_is_better
    assert set(names("stability")) == {"val_loss_fluctuation", "train_loss_fluctuation", "val_loss_rise",
                                       "train_loss_rise", "val_acc_drop", "val_acc_worst_drop"}
    assert all(STATISTICS[s.alternative] for s in STATISTICS.values() if s.alternative)
    with pytest.raises(ConfigError, match="val_loss_wobble.*one of"):
        statistic("val_loss_wobble")
    assert statistic("test_acc").show(0.0052, signed=True) == "+0.52"


def test_minimum_effects_scale_with_the_control_and_never_vanish():
    accuracy, fluctuation = statistic("test_acc"), statistic("val_loss_fluctuation")
    assert accuracy.minimum_effect(0.9) == 0.005  # ±0.5 points whatever the level
    assert fluctuation.minimum_effect(0.02, 0.5) == pytest.approx(0.005)  # a quarter of the control's level
    # a rise of 0.0005 per epoch on a loss of 0.16 is smaller than 1% of the loss: it cannot count
    assert fluctuation.minimum_effect(0.0015, 0.16) == pytest.approx(0.0016)
    assert all(s.minimum_effect(0.0, 0.0) > 0 for s in STATISTICS.values() if s.kind != "stability" and s.minimum)


def test_steady_descent_and_convergence_are_not_instability():
    descending = stability_statistics(curve([2.0, 1.5, 1.0, 0.6, 0.3, 0.1]))
    plateau = stability_statistics(curve([0.30, 0.30, 0.30, 0.30, 0.30, 0.30]))
    oscillating = stability_statistics(curve([0.5, 0.4, 0.6, 0.4, 0.6, 0.4]))
    assert descending["val_loss_rise"] == 0.0 and plateau["val_loss_rise"] == 0.0
    assert plateau["val_loss_fluctuation"] == pytest.approx(0.0, abs=1e-12)
    # the old statistic ranked the steep, steady descent as the least stable of the three
    assert descending["val_loss_tv"] > oscillating["val_loss_tv"] > plateau["val_loss_tv"]
    # epochs 4..6 against their predecessors: 0.6 -> 0.4 falls, 0.4 -> 0.6 rises by 0.2, 0.6 -> 0.4 falls
    assert oscillating["val_loss_rise"] == pytest.approx(0.2 / 3)
    assert oscillating["stability_window"] == 3 and oscillating["val_loss_fluctuation"] > 0.1


def test_fluctuation_is_blind_to_trends_and_steady_overfitting_but_not_to_wobble():
    assert trend_residual_sd(np.linspace(0.2, 0.8, 10)) == pytest.approx(0.0, abs=1e-12)  # steady overfitting
    assert trend_residual_sd(np.linspace(1.0, 0.1, 10)) == pytest.approx(0.0, abs=1e-12)  # steady descent
    wobble = np.linspace(0.2, 0.8, 10) + 0.05 * (-1.0) ** np.arange(10)
    assert trend_residual_sd(wobble) == pytest.approx(0.05, rel=0.15)
    assert np.isnan(trend_residual_sd([0.1, 0.2]))
    overfitting = stability_statistics(curve([0.6, 0.5, 0.55, 0.6, 0.65, 0.7]))
    assert overfitting["val_loss_rise"] == pytest.approx(0.05)  # the rise counts steady overfitting...
    assert overfitting["val_loss_fluctuation"] == pytest.approx(0.0, abs=1e-12)  # ...the fluctuation does not


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
    assert common_window([8, 12], "longer") == 6 and common_window([30], "longer") == 22
    with pytest.raises(ConfigError, match="window"):
        common_window([8], "shorter")


def test_paired_test_sees_a_consistent_difference_that_intervals_miss():
    # seeds differ a lot from each other, but b is 1 point above a on every seed
    a = pd.Series([0.80, 0.90, 0.70, 0.85, 0.75])
    b = a + 0.01 + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])
    result = paired_compare(a, b, "test_acc", ("a", "b"), higher_is_better=True, margin=0.005)
    assert result.outcome == "a worse" and result.a_better_in == 0
    assert result.ci_high < 0 < result.p_value < 1e-4
    assert result.effect_size < -5  # d_z: the mean difference in units of its own SD
    assert verdict(result, "same") == FAILS  # 1 point apart, well beyond ±0.5
    # unpaired 95% intervals overlap widely: the old verdict would have been "indistinguishable"
    assert abs(a.mean() - b.mean()) < a.std()


def test_the_four_labels_of_an_equivalence_claim():
    a = pd.Series([0.900, 0.910, 0.905, 0.902, 0.908])
    same = paired_compare(a + np.array([0.001, -0.001, 0.0005, -0.0005, 0.0]), a, margin=0.005)
    assert same.outcome == "equivalent (±0.005)" and verdict(same, "same") == HOLDS
    noisy = paired_compare(a + np.array([0.03, -0.03, 0.02, -0.025, 0.004]), a, margin=0.005)
    assert verdict(noisy, "same") == UNDECIDED
    # lower on every seed, by 0.2 to 0.8 points: a real difference that may or may not pass the margin
    lower = paired_compare(a - np.array([0.002, 0.008, 0.004, 0.006, 0.005]), a, margin=0.005)
    assert lower.ci_high < 0 and lower.ci_low < -0.005 < lower.ci_high
    assert verdict(lower, "same") == "lower, equivalence not shown" == not_shown(-1, "same")
    one = paired_compare(pd.Series([0.9]), pd.Series([0.8]), margin=0.005)
    assert one.outcome.startswith("undecided") and verdict(one, "same") == UNDECIDED


def test_a_superiority_claim_needs_the_minimum_effect_not_just_significance():
    b = pd.Series([0.010, 0.012, 0.011, 0.009, 0.010])  # e.g. a fluctuation, lower is steadier
    big = paired_compare(b - 0.004 + np.array([0.0002, -0.0002, 0.0001, 0.0, -0.0001]), b, higher_is_better=False,
                         margin=0.0025)
    assert verdict(big, "better") == HOLDS
    tiny = paired_compare(b - 0.0005 + np.array([0.0001, -0.0001, 0.0, 0.00005, -0.00005]), b,
                          higher_is_better=False, margin=0.0025)
    assert tiny.ci_high < 0 and verdict(tiny, "better") == FAILS  # real, but smaller than counts: cannot hold
    edge = paired_compare(b - 0.002 + np.array([0.001, -0.001, 0.0008, -0.0008, 0.0]), b, higher_is_better=False,
                          margin=0.0025)
    assert edge.ci_high < 0 and edge.ci_low < -0.0025 and verdict(edge, "better") == "lower, minimum effect not shown"
    equal = paired_compare(b, b, higher_is_better=False, margin=0.0025)
    assert equal.outcome == "equal on every seed" and verdict(equal, "better") == FAILS
    assert verdict(paired_compare(b, b, margin=0.005), "same") == HOLDS
    with pytest.raises(ValueError, match="positive minimum effect"):
        verdict(paired_compare(b, b + 0.001, margin=0.0), "better")


def test_labels_read_from_p_values_agree_with_the_interval_rules():
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = pd.Series(rng.normal(rng.normal(0, 0.004), 0.004, size=5))
        result = paired_compare(d, pd.Series(np.zeros(5)), margin=0.005)
        p = claim_p_values(result, "same")
        assert (p["differs"] < 0.05) == (result.ci_low > 0 or result.ci_high < 0)
        assert (p["fails"] < 0.05) == (result.ci_low > 0.005 or result.ci_high < -0.005)
        better = claim_p_values(result, "better")
        assert (better["holds"] < 0.05) == (result.ci_low > 0)
        assert (better["fails"] < 0.05) == (result.ci_high < 0.005)


def test_holm_adjusts_step_down_and_keeps_order():
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, np.nan, 0.02], nan_ok=True)
    assert np.all(holm([0.5, 0.9]) <= 1.0) and holm([]).size == 0
    raw = np.random.default_rng(0).uniform(0, 0.2, 10)
    assert np.all(holm(raw) >= raw)


def test_seeds_are_paired_by_index_not_position():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([3.1, 1.1, 2.1], index=[2, 0, 1])  # the same seeds, listed in another order
    result = paired_compare(a, b, higher_is_better=False)
    assert result.mean_diff == pytest.approx(-0.1) and result.ci_low == result.ci_high  # identical differences
    assert result.outcome == "a better" and result.n == 3 and result.seeds == [0, 1, 2]


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
